// `npm run bench -- <name>`: runs one benchmark (or all) and prints JSON plus a table.
const benches: Record<string, () => Promise<unknown>> = {
  wal: () => import('./wal.ts'),
  crdt: () => import('./crdt.ts'),
  ingest: () => import('./ingest.ts'),
  state: () => import('./state.ts'),
  cluster: () => import('./cluster.ts'),
};

// Bench names are the bare words; `--flag value` pairs belong to the benchmarks.
const args = process.argv.slice(2);
const names = args.filter((arg, index) => !arg.startsWith('-') && (index === 0 || !args[index - 1].startsWith('--')));
const selected = names.length === 0 ? Object.keys(benches) : names;
for (const name of selected) {
  const load = benches[name];
  if (!load) {
    console.error(`unknown benchmark "${name}"; known: ${Object.keys(benches).join(', ')}`);
    process.exit(2);
  }
  const module = (await load()) as { main: (argv: string[]) => Promise<void> };
  await module.main(process.argv.slice(2));
}
