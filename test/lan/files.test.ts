/**
 * A file between two hosts of a real (virtual) LAN: network namespaces on one bridge, a
 * node each on the default ports, finding each other by broadcast (no --target, no --bind).
 * h1's `send-file` (beside its node) offers a file and a folder; h2's `accept` (beside its
 * node, which fetches over its own secure session to h1's chat port) takes them; they land
 * in h2's downloads with the sender's SHA-256. Needs root and iproute2 (skipped otherwise).
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type CliProcess, cleanup, ensureBuilt, tempDir } from "../support/cli.ts"
import { createLan, deleteLeftovers, type Lan, netnsUnavailable } from "./netns.ts"

const unavailable = netnsUnavailable()
if (unavailable !== undefined) console.warn(`skipping LAN file tests: ${unavailable}`)

const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

let lan: Lan | undefined

beforeAll(async () => {
  if (unavailable !== undefined) return
  deleteLeftovers()
  await ensureBuilt()
  lan = createLan(2, { subnet: "10.77.9" })
}, 120_000)

afterAll(async () => {
  await cleanup()
  lan?.teardown()
})

describe("files on a LAN in network namespaces", () => {
  it.skipIf(unavailable !== undefined)("h1 sends a file and a folder to h2, found by broadcast; both arrive with the same SHA-256", async () => {
    const [h1, h2] = lan!.hosts as [NonNullable<Lan>["hosts"][number], NonNullable<Lan>["hosts"][number]]
    const dirs = [tempDir("p2pchat-lanfiles-h1-"), tempDir("p2pchat-lanfiles-h2-")] as const
    const src = tempDir("p2pchat-lanfiles-src-")
    const file = path.join(src, "film.bin")
    fs.writeFileSync(file, randomBytes(20 * 1024 * 1024))
    fs.mkdirSync(path.join(src, "notes", "old"), { recursive: true })
    fs.writeFileSync(path.join(src, "notes", "a.txt"), "alpha\n")
    fs.writeFileSync(path.join(src, "notes", "old", "b.bin"), randomBytes(100_000))
    const opts = (i: 0 | 1) => ["--name", `h${i + 1}`, "--data-dir", dirs[i], "--announce-every", "1s"]
    const nodes: Array<CliProcess> = [h1.spawnCli(["start", ...opts(0), "--json"]), h2.spawnCli(["start", ...opts(1), "--json"])]
    await nodes[0]!.waitForJson((e) => e.event === "peer" && e.username === "h2" && e.status === "online", 10_000)
    await nodes[1]!.waitForJson((e) => e.event === "peer" && e.username === "h1" && e.status === "online", 10_000)

    const sent = await h1.runCli(["send-file", "h2", file, path.join(src, "notes"), "--no-wait", ...opts(0)], 30_000)
    expect(sent.code, `${sent.stdout}\n${sent.stderr}`).toBe(0)
    for (const name of ["film.bin", "notes"]) {
      const offer = (await nodes[1]!.waitForJson((e) => e.event === "file" && e.state === "offered" && e.name === name, 10_000)).value
      expect(offer).toMatchObject({ direction: "in", peer: "h1" })
      const taken = await h2.runCli(["accept", offer.id, ...opts(1)], 60_000)
      expect(taken.code, `${taken.stdout}\n${taken.stderr}`).toBe(0)
      const done = (await nodes[1]!.waitForJson((e) => e.event === "file" && e.id === offer.id && e.state === "done", 10_000)).value
      expect(done.path.startsWith(path.join(dirs[1], "downloads"))).toBe(true)
      if (name === "film.bin") expect(sha256(done.path)).toBe(sha256(file))
      else {
        expect(fs.readFileSync(path.join(done.path, "a.txt"), "utf8")).toBe("alpha\n")
        expect(sha256(path.join(done.path, "old", "b.bin"))).toBe(sha256(path.join(src, "notes", "old", "b.bin")))
      }
    }
    // h1 saw h2 take both
    await nodes[0]!.waitForJson((e) => e.event === "file" && e.name === "notes" && e.direction === "out" && e.state === "done", 10_000)
    for (const n of nodes) expect(n.stderr.filter((l) => /\[(error|fatal)/i.test(l))).toEqual([])
  }, 60_000)
})
