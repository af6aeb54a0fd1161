// How the CLI starts another tidelog CLI process (the demo's load child, a local cluster's
// nodes). From the sources (this module is a .ts file, run under tsx) the child is main.ts
// with tsx's loader; from the built package (dist/, plain JavaScript) it is main.js with plain
// node, which needs no tsx. The module's own extension says which: main sits beside it.

import { fileURLToPath } from 'node:url';

const FROM_SOURCES = import.meta.url.endsWith('.ts');

/** The CLI entry beside this module: src/cli/main.ts or dist/cli/main.js. */
export const CLI_MAIN_PATH = fileURLToPath(new URL(FROM_SOURCES ? './main.ts' : './main.js', import.meta.url));

/** Node flags a child needs to run CLI_MAIN_PATH: tsx's loader (an absolute URL, so any cwd works) for the sources, none for the build. */
export function cliExecArgv(): string[] {
  return FROM_SOURCES ? ['--import', import.meta.resolve('tsx')] : [];
}

/** argv (after process.execPath) that runs the tidelog CLI with `args`. */
export function cliArgs(args: readonly string[]): string[] {
  return [...cliExecArgv(), CLI_MAIN_PATH, ...args];
}
