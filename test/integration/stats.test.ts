/**
 * `p2pchat stats` through the CLI: two `p2pchat start` nodes (alice and bob) on loopback, a
 * secure message from alice's data dir to bob, then `stats --json` on bob's data dir, read
 * from the snapshot bob's node saves there; after bob stops, the same numbers, not running.
 * Also: a data dir no node ever ran on (exit 1, one line), the text table, and `respond`.
 *
 * Loopback only: every node gets `--bind 127.0.0.1` and a 127.0.0.1 target.
 */
import { describe, expect, it } from "vitest"
import {
  type CliProcess,
  freePort,
  LOOPBACK,
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

useBuiltCli({ cleanupAfterEach: true })

const optionsOf = (n: NodeSpec): Array<string> => [...nodeOptions(n), "--announce-every", "1s"]

const cli = (n: NodeSpec, args: ReadonlyArray<string>, timeoutMs = 15_000): Promise<RunResult> =>
  runCli([...args, ...optionsOf(n)], { timeoutMs })

const startNode = (n: NodeSpec): CliProcess => spawnCli(["start", ...optionsOf(n)], { stdin: "pipe" })

/** `stats --json` on n's data dir, parsed; fails the test when it does not exit 0. */
const statsOf = async (n: NodeSpec): Promise<any> => {
  const r = await cli(n, ["stats", "--json"])
  expect(r.code, `stats --json on ${n.name}: ${r.stderr}`).toBe(0)
  return JSON.parse(r.stdout)
}

describe("p2pchat stats", () => {
  it("counts a secure message a node received, while it runs and after it stopped", async () => {
    const { alice, bob } = await nodePair("p2pchat-stats-")
    const nodes = [startNode(alice), startNode(bob)]
    await Promise.all([
      nodes[0]!.waitForLine((l) => l === `* bob (${LOOPBACK}) is online`, { timeoutMs: 6_000 }),
      nodes[1]!.waitForLine((l) => l === `* alice (${LOOPBACK}) is online`, { timeoutMs: 6_000 })
    ])
    // `send` finds bob in the peers alice's node saved; give that snapshot time to hold him
    await waitFor("bob in alice's saved peers", async () => {
      const r = await cli(alice, ["peers", "--json"])
      return (JSON.parse(r.stdout) as Array<{ username: string }>).find((p) => p.username === "bob")
    }, 5_000, 100)

    const before = await statsOf(bob)
    expect(before).toMatchObject({ running: true, pid: nodes[1]!.pid, received: 0, sessionsIn: 0 })
    expect(Date.now() - Date.parse(before.updatedAt)).toBeLessThan(10_000)

    const sent = await cli(alice, ["send", "bob", "count me", "--secure"])
    expect(sent.code, sent.stderr).toBe(0)
    await nodes[1]!.waitForLine((l) => l.endsWith("alice (key not verified): count me"), { timeoutMs: 5_000 })

    // the node saves within 2 s of a change
    const after = await waitFor("bob's saved stats to count the message", async () => {
      const s = await statsOf(bob)
      return s.received >= 1 ? s : undefined
    }, 6_000, 200)
    expect(after.running).toBe(true)
    expect(after.accepted).toBeGreaterThanOrEqual(1)
    expect(after.sessionsIn).toBeGreaterThanOrEqual(1)
    expect(after.received).toBeGreaterThanOrEqual(1)
    expect(after.pending).toBe(0)
    expect(after.rejected).toBe(0)
    expect(Object.keys(after.limits).sort()).toEqual(
      ["evictedAtCap", "firstFrameTimeout", "frameTooLarge", "idleTimeout", "refusedAtCap", "refusedPerAddress"]
    )

    const text = await cli(bob, ["stats"])
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toMatch(new RegExp(`^running \\(pid ${nodes[1]!.pid}\\); numbers from \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC$`, "m"))
    expect(text.stdout).toMatch(/^messages +received [1-9]\d*,/m)

    // a stopped node leaves its last numbers, marked as no longer running
    await nodes[1]!.stop()
    const stopped = await statsOf(bob)
    expect(stopped.running).toBe(false)
    expect(stopped.received).toBeGreaterThanOrEqual(after.received)
    expect(stopped.sessionsIn).toBeGreaterThanOrEqual(1)
    const stoppedText = await cli(bob, ["stats"])
    expect(stoppedText.stdout.split("\n")[0]).toMatch(/^not running; last numbers from .* UTC \(pid \d+\)$/)
  }, 40_000)

  it("says so, in one line with exit 1, when no node saved stats in the data dir", async () => {
    const dataDir = tempDir("p2pchat-stats-none-")
    for (const json of [[], ["--json"]]) {
      const r = await runCli(["stats", ...json, "--data-dir", dataDir])
      expect(r.code, r.stdout + r.stderr).toBe(1)
      expect(r.stdout).toBe("")
      expect(r.stderr.trim().split("\n")).toEqual([`p2pchat: no stats: no node has saved any in ${dataDir} (start one with this data dir)`])
    }
  }, 20_000)

  it("`respond` saves its counters too", async () => {
    const dataDir = tempDir("p2pchat-stats-respond-")
    const port = await freePort()
    const args = ["--data-dir", dataDir, "--bind", LOOPBACK, "--udp-port", String(port), "--tcp-port", "0"]
    const responder = spawnCli(["respond", ...args])
    await responder.waitForLine((l) => l.includes("listening on TCP"), { stream: "stderr", timeoutMs: 6_000 })
    const s = await waitFor("respond's saved stats", async () => {
      const r = await runCli(["stats", "--json", ...args])
      return r.code === 0 ? JSON.parse(r.stdout) : undefined
    }, 5_000, 100)
    expect(s).toMatchObject({ running: true, pid: responder.pid, accepted: 0 })
  }, 20_000)
})
