// Test runner: every *.test.ts under test/ (or those matching argv filters) in one uvu run.
// uvu prints "Total / Passed / Skipped"; .ci/run turns that into the closing summary line.
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { run } from 'uvu/run';

function findTests(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...findTests(path));
    else if (name.endsWith('.test.ts')) found.push(path);
  }
  return found;
}

const root = resolve(import.meta.dirname);
const filters = process.argv.slice(2);
const files = findTests(root).filter(
  (file) => filters.length === 0 || filters.some((filter) => relative(root, file).includes(filter)),
);
if (files.length === 0) {
  console.error(`no test files match ${JSON.stringify(filters)}`);
  process.exit(1);
}
await run(files.map((file) => ({ name: relative(root, file), file })), { bail: false });
