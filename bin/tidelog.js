#!/usr/bin/env node
// The `tidelog` bin. An installed package runs its build (dist/, plain node); a checkout of the
// repository, which has no build, runs the TypeScript sources through tsx's loader.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

const built = new URL('../dist/cli/main.js', import.meta.url);
if (existsSync(built) && !existsSync(new URL('../src/cli/main.ts', import.meta.url))) {
  await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
