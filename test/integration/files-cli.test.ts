/**
 * File transfer through the CLI, as a person would use it (cli.md "send-file"): two `start`
 * nodes (alice and bob) as child processes on loopback, each with its own data dir, free
 * ports and `--json` event stream; `send-file`, `accept`, `decline` and `files` run as
 * separate processes beside them, on the same data dirs.
 *
 *   - a file: offered, seen in bob's events with name, size and SHA-256, accepted, and in
 *     bob's downloads with the same SHA-256; send-file and accept both exit 0;
 *   - a folder, with a sub-folder: every file in place, with its relative path;
 *   - resume after the receiver's node is killed (SIGKILL) mid-transfer and started again,
 *     and after the sender's: the file arrives whole, and the bytes alice served in total
 *     (her transfer row) are at most its size plus one chunk;
 *   - decline: send-file exits 1, saying so;
 *   - --accept-files-from: alice's offer is taken without `accept` once bob verified her key, carol's is not;
 *   - usage errors: one clear line, exit 2 (or 1 for an unknown user or a missing path).
 *
 * Loopback only: every node gets `--bind 127.0.0.x` and targets on loopback. Nothing in the
 * product is slowed down: the kill moments are picked from bob's progress events.
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  type CliProcess,
  isPeer,
  nodeOptions,
  nodePair,
  type NodeSpec,
  runCli,
  type RunResult,
  spawnCli,
  tempDir,
  useBuiltCli,
  waitFor
} from "../support/cli.ts"

useBuiltCli({ cleanupAfterEach: false })

/** The largest chunk a transfer sends (a Noise transport message's payload, protocol.md 9). */
const CHUNK = 65_535

const sha256File = (file: string): string => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

/** A file of `mb` MiB of random bytes. */
const randomFile = (dir: string, name: string, mb: number): string => {
  const file = path.join(dir, name)
  const fd = fs.openSync(file, "w")
  for (let i = 0; i < mb; i++) fs.writeSync(fd, randomBytes(1024 * 1024))
  fs.closeSync(fd)
  return file
}

const options = (n: NodeSpec, extra: ReadonlyArray<string> = []) => [...nodeOptions(n), "--announce-every", "1s", ...extra]

/** A node with its console reading stdin (a script: the test types commands as `input`). */
const startNode = (n: NodeSpec, extra: ReadonlyArray<string> = []): CliProcess =>
  spawnCli(["start", ...options(n, extra), "--json"], { stdin: "pipe" })

const cli = (n: NodeSpec, args: ReadonlyArray<string>, timeoutMs = 30_000): Promise<RunResult> =>
  runCli([...args, ...options(n)], { timeoutMs })

/** The `file` events a node printed for transfer `id` (or every one). */
const fileEvents = (node: CliProcess, id?: string) =>
  node.json().filter((e) => e.event === "file" && (id === undefined || e.id === id))

/** Waits for the offer of `name` in `node`'s events; its event. */
const offerOf = async (node: CliProcess, name: string, timeoutMs = 15_000) =>
  (await node.waitForJson((e) => e.event === "file" && e.direction === "in" && e.state === "offered" && e.name === name, timeoutMs)).value

/** Both nodes online to each other, and a secure session between them (so that each has pinned the other). */
const meet = async (a: CliProcess, b: CliProcess, an: NodeSpec, bn: NodeSpec) => {
  await a.waitForJson(isPeer(bn.name, "online"), 10_000)
  await b.waitForJson(isPeer(an.name, "online"), 10_000)
}

const transferRow = async (n: NodeSpec, id: string, direction: "in" | "out") => {
  const r = await runCli(["files", "--json", "--data-dir", n.dataDir])
  expect(r.code, r.stderr).toBe(0)
  return (JSON.parse(r.stdout) as Array<any>).find((t) => t.id === id && t.direction === direction)
}

let alice: NodeSpec
let bob: NodeSpec
let aliceNode: CliProcess
let bobNode: CliProcess
let files: string
let bobDownloads: string

describe("file transfer through the CLI", () => {
  it("offers a file; bob sees it with name, size and SHA-256, accepts it, and has it with the same hash", async () => {
    ;({ alice, bob } = await nodePair("p2pchat-files-"))
    files = tempDir("p2pchat-files-src-")
    bobDownloads = path.join(bob.dataDir, "downloads")
    aliceNode = startNode(alice)
    bobNode = startNode(bob)
    await meet(aliceNode, bobNode, alice, bob)

    const file = randomFile(files, "report.bin", 3)
    const sender = spawnCli(["send-file", "bob", file, ...options(alice), "--json"])
    const offer = await offerOf(bobNode, "report.bin")
    expect(offer).toMatchObject({ direction: "in", peer: "alice", size: 3 * 1024 * 1024, count: 1, sha256: sha256File(file), bytes: 0 })

    const accepted = await cli(bob, ["accept", offer.id.slice(0, 8)])
    expect(accepted.code, accepted.stderr).toBe(0)
    const sent = await sender.exited
    expect(sent.code, sender.stderr.join("\n")).toBe(0)
    const saved = path.join(bobDownloads, "report.bin")
    expect(sha256File(saved)).toBe(offer.sha256)
    // send-file's own lines: TransferEvents, the last one done
    const events = sender.json().filter((e) => e.event === "file")
    expect(events.at(-1)).toMatchObject({ direction: "out", state: "done", size: offer.size })
    // bob's node said it was done, with where it saved it
    const done = await bobNode.waitForJson((e) => e.event === "file" && e.id === offer.id && e.state === "done", 5_000)
    expect(done.value.path).toBe(saved)
    // and `files` lists it on both sides
    expect(await transferRow(bob, offer.id, "in")).toMatchObject({ state: "done", bytes: offer.size, path: saved })
    expect(await transferRow(alice, offer.id, "out")).toMatchObject({ state: "done", peer: "bob" })
  }, 30_000)

  it("offers a folder with a sub-folder: every file arrives in place, with its relative path and content", async () => {
    const folder = path.join(files, "album")
    fs.mkdirSync(path.join(folder, "raw", "deep"), { recursive: true })
    const contents = new Map<string, Buffer>([
      ["a.txt", Buffer.from("first\n")],
      ["raw/b.bin", randomBytes(200_000)],
      ["raw/deep/c.bin", randomBytes(70_000)],
      ["empty.txt", Buffer.alloc(0)]
    ])
    for (const [rel, data] of contents) fs.writeFileSync(path.join(folder, rel), data)

    const sender = spawnCli(["send-file", "bob", folder, ...options(alice)])
    const offer = await offerOf(bobNode, "album")
    expect(offer).toMatchObject({ count: contents.size, size: 6 + 200_000 + 70_000 })
    const accepted = await cli(bob, ["accept", offer.id, "--json"])
    expect(accepted.code, accepted.stderr).toBe(0)
    const last = accepted.stdout.trim().split("\n").map((l) => JSON.parse(l)).at(-1)
    expect(last).toMatchObject({ event: "file", id: offer.id, direction: "in", state: "done", bytes: offer.size })
    expect((await sender.exited).code, sender.stderr.join("\n")).toBe(0)
    // send-file said what it offered, with the hash
    expect(sender.stdout.join("\n")).toContain(offer.sha256)
    for (const [rel, data] of contents) expect(fs.readFileSync(path.join(last.path, rel)).equals(data), rel).toBe(true)
  }, 20_000)

  /**
   * Offers `mb` MiB, has bob accept it (recorded beside his node, which fetches), and once
   * bob's events show it a quarter done, kills `victim`'s node with SIGKILL and starts it
   * again; the file must then arrive whole. Returns what it measured (bytes):
   *   shown:  the most bob's events showed received before the kill;
   *   part:   (receiver killed) the size of bob's .part right after the kill: what he had written;
   *   servedBefore: what alice's row said she had served once the kill was over (her
   *           session paused, or her node stopped);
   *   served: what it says at the end;
   *   resumedFrom: where bob's fetch after the restart began: size - (served - servedBefore).
   */
  const killMidway = async (victim: "alice" | "bob", name: string, mb: number) => {
    const file = randomFile(files, name, mb)
    const sender = spawnCli(["send-file", "bob", file, ...options(alice), "--json"])
    const offer = await offerOf(bobNode, name)
    const accepted = await cli(bob, ["accept", offer.id, "--no-wait"])
    expect(accepted.code, accepted.stderr).toBe(0)
    await bobNode.waitForJson((e) =>
      e.event === "file" && e.id === offer.id && e.state === "receiving" && e.bytes > e.size / 4 && e.bytes < e.size, 20_000)
    const node = victim === "bob" ? bobNode : aliceNode
    node.child.kill("SIGKILL")
    await node.exited
    const shown = Math.max(...fileEvents(bobNode, offer.id).map((e) => e.bytes as number))
    const partFile = fs.readdirSync(bobDownloads).find((f) => f.startsWith(name) && f.endsWith(".part"))
    const part = victim === "bob" && partFile !== undefined ? fs.statSync(path.join(bobDownloads, partFile)).size : undefined
    // alice's row once her side of the cut is stored: her session paused (bob killed), or as her node left it
    const servedBefore = victim === "bob"
      ? (await waitFor("alice's session to pause", async () => {
        const row = await transferRow(alice, offer.id, "out")
        return row?.state === "paused" ? row : undefined
      }, 10_000, 100)).bytes as number
      : (await transferRow(alice, offer.id, "out")).bytes as number
    const restarted = startNode(victim === "bob" ? bob : alice)
    if (victim === "bob") bobNode = restarted
    else aliceNode = restarted
    const done = await bobNode.waitForJson((e) => e.event === "file" && e.id === offer.id && (e.state === "done" || e.state === "failed"), 30_000)
    expect(done.value.state, JSON.stringify(done.value)).toBe("done")
    expect(sha256File(done.value.path)).toBe(sha256File(file))
    const sent = await sender.exited
    expect(sent.code, sender.stderr.join("\n")).toBe(0)
    expect(sender.json().at(-1)).toMatchObject({ event: "file", id: offer.id, direction: "out", state: "done" })
    const served = (await transferRow(alice, offer.id, "out")).bytes as number
    const measured = { size: offer.size as number, shown, part, servedBefore, served, resumedFrom: offer.size - (served - servedBefore) }
    console.log(`${victim} killed: ${JSON.stringify(measured)}`)
    return measured
  }

  it("resumes after the receiver's node is killed (SIGKILL) mid-transfer and started again", async () => {
    const m = await killMidway("bob", "resume-receiver.bin", 150)
    // what bob had written before the kill is not sent again, but for the last chunk
    // the kill came midway: bob had written a quarter (his events may run a few writes ahead of the disk)
    expect(m.part, "bob's .part after the kill").toBeGreaterThan(m.size / 4 - 8 * CHUNK)
    expect(m.part).toBeLessThan(m.size)
    expect(m.resumedFrom, "where bob's fetch began again").toBeGreaterThanOrEqual(m.part! - CHUNK)
    expect(m.resumedFrom).toBeLessThanOrEqual(m.part!)
  }, 60_000)

  it("resumes after the sender's node is killed (SIGKILL) mid-transfer and started again", async () => {
    const m = await killMidway("alice", "resume-sender.bin", 150)
    // what bob had received before the kill is not sent again, but for the last chunk
    expect(m.resumedFrom, "where bob's fetch began again").toBeGreaterThanOrEqual(m.shown - CHUNK)
    await meet(aliceNode, bobNode, alice, bob)
  }, 60_000)

  it("the consoles: `file bob PATH` offers, bob's `accept ID` fetches, `files` lists; the events say each step", async () => {
    const file = randomFile(files, "console.bin", 2)
    const from = aliceNode.stdout.length
    aliceNode.input(`file bob ${file}`)
    const offer = await offerOf(bobNode, "console.bin")
    const offered = await aliceNode.waitForJson((e) => e.event === "offered" && e.id === offer.id, 10_000)
    expect(offered.value).toMatchObject({ to: "bob", name: "console.bin", size: offer.size, sha256: offer.sha256 })
    bobNode.input(`accept ${offer.id.slice(0, 8)}`)
    const done = await bobNode.waitForJson((e) => e.event === "file" && e.id === offer.id && e.state === "done", 15_000)
    expect(sha256File(done.value.path)).toBe(offer.sha256)
    await aliceNode.waitForJson((e) => e.event === "file" && e.id === offer.id && e.direction === "out" && e.state === "done", 10_000)
    aliceNode.input("files")
    const listed = await aliceNode.waitForLine((l) => l.startsWith("[") && l.includes(offer.id), { from, timeoutMs: 5_000 })
    expect(JSON.parse(listed.line).find((t: any) => t.id === offer.id)).toMatchObject({ direction: "out", state: "done" })
    // no command failed on either console
    expect(aliceNode.json().filter((e) => e.event === "error")).toEqual([])
    expect(bobNode.json().filter((e) => e.event === "error")).toEqual([])
  }, 30_000)

  it("decline: bob refuses, and send-file exits 1 saying so", async () => {
    const file = randomFile(files, "unwanted.bin", 1)
    const sender = spawnCli(["send-file", "bob", file, ...options(alice)])
    const offer = await offerOf(bobNode, "unwanted.bin")
    const declined = await cli(bob, ["decline", offer.id.slice(0, 8)])
    expect(declined.code, declined.stderr).toBe(0)
    expect(declined.stdout).toBe("declined unwanted.bin from alice")
    const sent = await sender.exited
    expect(sent.code).toBe(1)
    expect(sender.stderr.join("\n")).toMatch(/^p2pchat: .*unwanted\.bin.*declined/)
    expect(fs.readdirSync(bobDownloads).filter((f) => f.startsWith("unwanted"))).toEqual([])
    expect(await transferRow(bob, offer.id, "in")).toMatchObject({ state: "declined" })
  }, 20_000)

  it("--accept-files-from: a listed peer's offer is fetched without accept once its key is verified; an unlisted one's waits", async () => {
    // bob takes files from carol only: alice's offer waits
    await bobNode.stop()
    bobNode = startNode(bob, ["--accept-files-from", "carol"])
    await meet(aliceNode, bobNode, alice, bob)
    const first = randomFile(files, "waits.bin", 1)
    const offered = await cli(alice, ["send-file", "bob", first, "--no-wait"])
    expect(offered.code, offered.stderr).toBe(0)
    const waiting = await offerOf(bobNode, "waits.bin")
    // bob's node decides when it records the offer: give it a sweep's time
    await new Promise((r) => setTimeout(r, 1_500))
    expect(await transferRow(bob, waiting.id, "in")).toMatchObject({ state: "offered", bytes: 0 })

    // bob takes files from alice once he has verified her key
    await bobNode.stop()
    bobNode = startNode(bob, ["--accept-files-from", "carol,alice"])
    await meet(aliceNode, bobNode, alice, bob)
    const aliceId = JSON.parse((await cli(alice, ["whoami", "--json"])).stdout)
    const trusted = await cli(bob, ["trust", "alice", aliceId.fingerprint])
    expect(trusted.code, trusted.stderr).toBe(0)
    const second = randomFile(files, "auto.bin", 1)
    const sender = spawnCli(["send-file", "bob", second, ...options(alice)])
    const done = await bobNode.waitForJson((e) => e.event === "file" && e.name === "auto.bin" && e.state === "done", 15_000)
    expect(sha256File(done.value.path)).toBe(sha256File(second))
    expect((await sender.exited).code, sender.stderr.join("\n")).toBe(0)
    // the earlier offer still waits for bob's word
    expect(await transferRow(bob, waiting.id, "in")).toMatchObject({ state: "offered" })
  }, 40_000)

  it("without a node on alice's data dir, send-file runs one itself and serves until bob has the file", async () => {
    await aliceNode.stop()
    const file = randomFile(files, "alone.bin", 2)
    const sender = spawnCli(["send-file", "bob", file, ...options(alice)])
    const offer = await offerOf(bobNode, "alone.bin")
    const taken = await cli(bob, ["accept", offer.id])
    expect(taken.code, taken.stderr).toBe(0)
    expect(taken.stdout).toContain(`received alone.bin (2.10 MB) from alice, SHA-256 verified: ${path.join(bobDownloads, "alone.bin")}`)
    const sent = await sender.exited
    expect(sent.code, sender.stderr.join("\n")).toBe(0)
    expect(sender.stdout).toContain("* bob has alone.bin (2.10 MB)")
    expect(sha256File(path.join(bobDownloads, "alone.bin"))).toBe(offer.sha256)
    // whoami shows where files land
    const who = await cli(bob, ["whoami", "--json"])
    expect(JSON.parse(who.stdout).downloads).toBe(bobDownloads)
    aliceNode = startNode(alice)
  }, 30_000)

  it("usage errors and failures: one clear line on stderr, exit 2 (usage) or 1", async () => {
    const file = path.join(files, "report.bin")
    const cases: Array<[ReadonlyArray<string>, number, RegExp]> = [
      [["send-file"], 2, /^p2pchat: missing USER .*; see `p2pchat send-file --help`$/],
      [["send-file", "bob"], 2, /^p2pchat: missing PATH: give the files or folders to send; see `p2pchat send-file --help`$/],
      [["send-file", "bob", path.join(files, "nope.bin")], 1, /^p2pchat: cannot send .*nope\.bin: no such file or folder$/],
      [["send-file", "nobody", file], 1, /^p2pchat: no user 'nobody' is online/],
      [["accept", "zzzz9999"], 1, /^p2pchat: no transfer 'zzzz9999' here; `p2pchat files` lists them$/],
      [["accept"], 2, /^p2pchat: missing ID; see `p2pchat accept --help`$/],
      [["files", "--max-file-size", "12Q"], 2, /^p2pchat: --max-file-size: expected a size like 500M, 2G or 8GiB, got '12Q'/]
    ]
    for (const [args, code, line] of cases) {
      const r = await cli(alice, args)
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(code)
      expect(r.stderr.split("\n"), args.join(" ")).toHaveLength(1)
      expect(r.stderr, args.join(" ")).toMatch(line)
    }
  }, 30_000)
})
