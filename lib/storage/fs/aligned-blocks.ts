/** Page-aligned memory for reads and writes past the page cache (`O_DIRECT`), lent out in blocks and freed as the transfers using it end. */

/**
 * Size of the blocks bytes gather in for writes, and are read in, past the page cache: large
 * enough that the disk takes them at full speed (docs/performance.md), small enough that the few
 * blocks a transfer holds stay cheap.
 */
export const DIRECT_BLOCK = 2 << 20;

/** Direct transfers need buffer addresses, file offsets and lengths on this boundary; a page covers 512 B and 4 KiB sectors. */
export const ALIGNMENT = 4096;

/** Blocks one append holds at most: those written or waiting to be, and the one being filled. */
export const BLOCKS_PER_APPEND = 4;

/** Blocks cut from one WebAssembly memory: one append's most, so a slab is freed as its append ends. */
const BLOCKS_PER_SLAB = BLOCKS_PER_APPEND;

/** Slabs with no block in use that are kept for the next transfer, so back-to-back ones reuse warm pages. */
const SPARE_SLABS = 1;

/** The part of the WebAssembly API used here (TypeScript's ES2022 library declares none of it). */
const webAssembly = (globalThis as { WebAssembly?: { Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer } } }).WebAssembly;

/**
 * Page-aligned blocks. Node's buffers promise no alignment, but WebAssembly memory starts on a page
 * boundary, so blocks are cut from slabs of it. Blocks are reused last in, first out, so the few in
 * use stay the resident ones. A slab whose blocks have all come back is kept while no more than
 * {@link SPARE_SLABS} are, else dropped for the garbage collector to free: memory follows the
 * transfers in flight, not the most there ever were.
 */
class AlignedBlocks {
  private readonly free: Buffer[] = [];
  /** Blocks out of each slab. */
  private readonly out = new Map<ArrayBufferLike, number>();

  /**
   * A block, or undefined where no WebAssembly memory can be had (Node run with `--jitless`, or
   * out of address space); the caller then goes through the cache.
   */
  take(): Buffer | undefined {
    if (this.free.length === 0 && webAssembly) this.addSlab();
    const block = this.free.pop();
    if (block) this.out.set(block.buffer, this.out.get(block.buffer)! + 1);
    return block;
  }

  /** Takes back a block (or any view into it) that nothing refers to any more. */
  give(view: Buffer): void {
    const memory = view.buffer;
    const block = Buffer.from(memory, Math.floor(view.byteOffset / DIRECT_BLOCK) * DIRECT_BLOCK, DIRECT_BLOCK);
    const left = this.out.get(memory)! - 1;
    this.out.set(memory, left);
    this.free.push(block);
    if (left > 0) return;
    let spare = 0;
    for (const count of this.out.values()) if (count === 0) spare++;
    if (spare <= SPARE_SLABS) return;
    this.out.delete(memory);
    for (let index = this.free.length - 1; index >= 0; index--) if (this.free[index].buffer === memory) this.free.splice(index, 1);
  }

  /** Whether blocks can be had here at all. */
  get available(): boolean {
    return webAssembly !== undefined;
  }

  private addSlab(): void {
    let memory: ArrayBuffer;
    try {
      memory = new webAssembly!.Memory({ initial: (BLOCKS_PER_SLAB * DIRECT_BLOCK) / 65536 }).buffer;
    } catch {
      return;
    }
    this.out.set(memory, 0);
    for (let index = BLOCKS_PER_SLAB - 1; index >= 0; index--) this.free.push(Buffer.from(memory, index * DIRECT_BLOCK, DIRECT_BLOCK));
  }
}

/** The process's aligned blocks, shared by every transfer. */
export const alignedBlocks = new AlignedBlocks();
