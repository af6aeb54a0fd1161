// The few members of hypercore@10 the benchmark uses (the package ships no types).
declare module 'hypercore' {
  class Hypercore {
    constructor(storage: string, options?: { createIfMissing?: boolean; overwrite?: boolean });
    readonly length: number;
    readonly byteLength: number;
    ready(): Promise<void>;
    /** One block or an array of blocks; resolves after the blocks are written (see hypercore.ts). */
    append(blocks: Uint8Array | readonly Uint8Array[]): Promise<{ length: number; byteLength: number }>;
    close(): Promise<void>;
  }
  export = Hypercore;
}
