/**
 * A small seeded generator (sfc32) for the fuzz harness. Every case gets its own generator,
 * derived from the run's seed and the case's index, so that any single case can be replayed
 * (`npm run fuzz -- --seed S --case I`) without running the ones before it.
 */

/** splitmix32: spreads a 32-bit state; used to derive independent seeds. */
const splitmix32 = (x: number): number => {
  x = (x + 0x9e3779b9) | 0
  let z = x
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return (z ^ (z >>> 16)) >>> 0
}

export class Rng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number, stream = 0) {
    this.a = splitmix32(seed ^ 0x5bd1e995)
    this.b = splitmix32(this.a ^ stream)
    this.c = splitmix32(this.b + 0x68e31da4)
    this.d = splitmix32(this.c ^ (stream * 0x27d4eb2d))
    for (let i = 0; i < 12; i++) this.u32()
  }

  /** The generator of case `index` of a run with `seed`. */
  static forCase(seed: number, index: number): Rng {
    return new Rng(splitmix32(seed) ^ splitmix32(index + 0x1234567), index)
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return t >>> 0
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296
  }

  /** Integer in [min, max] (inclusive). */
  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min + 1))
  }

  /** Small integers are much likelier than big ones: good for lengths and counts. */
  skewed(max: number): number {
    const r = this.float()
    return Math.min(max, Math.floor(Math.pow(r, 3) * (max + 1)))
  }

  chance(p: number): boolean {
    return this.float() < p
  }

  pick<A>(items: ReadonlyArray<A>): A {
    return items[Math.floor(this.float() * items.length)]!
  }

  /** Picks by weight: `[[weight, value], ...]`. */
  weighted<A>(items: ReadonlyArray<readonly [number, A]>): A {
    let total = 0
    for (const [w] of items) total += w
    let r = this.float() * total
    for (const [w, v] of items) {
      if ((r -= w) < 0) return v
    }
    return items[items.length - 1]![1]
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i += 4) {
      let x = this.u32()
      for (let j = 0; j < 4 && i + j < n; j++) {
        out[i + j] = x & 0xff
        x >>>= 8
      }
    }
    return out
  }
}

/** A fresh random 32-bit seed (for runs that were not given one). */
export const randomSeed = (): number => (Math.floor(Math.random() * 0x100000000) ^ Date.now()) >>> 0
