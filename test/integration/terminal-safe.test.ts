/**
 * Hostile LAN, part 8, through real CLI processes on loopback: a peer whose messages hold
 * ESC [ 2 J, U+0085, a right-to-left override (U+202E), a left-to-right mark, DEL and a C1
 * CSI (its name cannot: usernames refuse every control, format and invisible character),
 * and a send to a name that holds them. Alice runs a text console, the peer a `--json` one.
 * The typed texts hold no U+2028/9: since Node 24 the console's line reader ends a line
 * there too (their escaping is checked through `send`'s argument and in the unit tests).
 * Nothing either prints, on stdout or stderr, carries a raw control, bidi or separator
 * character: the text lines show `\uXXXX` escapes (a failed send quoting a hostile name
 * too), the `--json` lines and `history --json` escape them and parse back to the
 * original strings.
 *
 * Loopback only: every node gets `--bind 127.0.0.1` and a 127.0.0.1 target.
 */
import { beforeAll, describe, expect, it } from "vitest"
import {
  type CliProcess,
  type HistoryRow,
  LOOPBACK,
  nodeOptions,
  nodePair,
  type NodeSpec,
  runCli,
  spawnCli,
  useBuiltCli
} from "../support/cli.ts"

const NAME = "malyrol"
const NAME_SHOWN = NAME
/** What the peer sends, and what alice sends back: no \r or \n (the console reads lines). */
const TEXT = "hi\u001b[2J\u0085next\u200eline\u202egnp.exe\u007f\u009b31m end"
const TEXT_SHOWN = "hi\\u001b[2J\\u0085next\\u200eline\\u202egnp.exe\\u007f\\u009b31m end"
const REPLY = `re:${TEXT}`

/** Every character that must never be printed raw. */
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u

const optionsOf = (n: NodeSpec) => [...nodeOptions(n), "--announce-every", "1s"]
const cli = (n: NodeSpec, args: ReadonlyArray<string>) => runCli([...args, ...optionsOf(n)], { timeoutMs: 15_000 })

const expectNoRaw = (what: string, lines: ReadonlyArray<string>) => {
  const raw = lines.filter((l) => RAW.test(l))
  expect(raw, `${what} printed raw control/bidi characters`).toEqual([])
}

let alice: NodeSpec
let mallory: NodeSpec
let aliceNode: CliProcess
let malloryNode: CliProcess

useBuiltCli({ cleanupAfterEach: false })

beforeAll(async () => {
  const pair = await nodePair("p2pchat-safe-")
  alice = pair.alice
  mallory = { ...pair.bob, name: NAME }
  aliceNode = spawnCli(["start", ...optionsOf(alice)], { stdin: "pipe" })
  malloryNode = spawnCli(["start", "--json", ...optionsOf(mallory)], { stdin: "pipe" })
  await Promise.all([
    aliceNode.waitForLine((l) => /^\* malyrol \(127\.0\.0\.1\) is online$/.test(l), { timeoutMs: 8_000 }),
    malloryNode.waitForJson((e) => e.event === "peer" && e.username === "alice" && e.status === "online", 8_000)
  ])
}, 30_000)

describe("a hostile peer's name and text never reach the terminal raw", () => {
  it("alice's console shows the peer online", () => {
    expect(aliceNode.stdout).toContain(`* ${NAME_SHOWN} (${LOOPBACK}) is online`)
    expectNoRaw("alice's console", aliceNode.stdout)
  })

  it("alice's console shows the peer's message with escapes", async () => {
    malloryNode.input(`msg alice ${TEXT}`)
    const { line } = await aliceNode.waitForLine((l) => l.includes(": hi"), { timeoutMs: 10_000 })
    // a first secure session: the key is pinned, not yet verified by alice, and the line says so
    expect(line).toMatch(new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\] ${NAME_SHOWN.replace(/\\/g, "\\\\")} \\(key not verified\\): `))
    expect(line.endsWith(`: ${TEXT_SHOWN}`)).toBe(true)
    expectNoRaw("alice's console", aliceNode.stdout)
  }, 20_000)

  it("alice's log lines (stderr) name the peer, with nothing raw", async () => {
    // the responder logs each secure session with the name its handshake proved
    await aliceNode.waitForLine((l) => l.includes("secure session from"), { timeoutMs: 10_000, stream: "stderr" })
    expect(aliceNode.stderr.join("\n")).toContain(NAME_SHOWN)
    expectNoRaw("alice's log", aliceNode.stderr)
  }, 20_000)

  it("the peer's --json console gets alice's reply as one escaped JSON line that parses back", async () => {
    const from = malloryNode.stdout.length
    aliceNode.input(`msg ${NAME} ${REPLY}`)
    const { line } = await malloryNode.waitForLine((l) => l.includes("\"event\":\"message\""), { timeoutMs: 10_000, from })
    for (const escape of ["\\u001b", "\\u0085", "\\u200e", "\\u202e", "\\u007f", "\\u009b"]) expect(line).toContain(escape)
    expect(JSON.parse(line)).toMatchObject({ event: "message", from: "alice", text: REPLY })
    await aliceNode.waitForLine((l) => l === `  delivered to ${NAME_SHOWN}`, { timeoutMs: 5_000 })
    expectNoRaw("the --json console", malloryNode.stdout)
  }, 20_000)

  it("a failed send quoting a hostile name shows escapes, in the console and from `send`", async () => {
    const from = aliceNode.stdout.length
    aliceNode.input("msg gh\u202eost\u0085\u001b[2J hello")
    const { line } = await aliceNode.waitForLine((l) => l.startsWith("! not delivered"), { timeoutMs: 5_000, from })
    expect(line).toBe("! not delivered: no user 'gh\\u202eost\\u0085\\u001b[2J' is online; 'users' lists who is")
    const r = await cli(alice, ["send", "gh\u202eost\u2028", "hello"])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("no user 'gh\\u202eost\\u2028' is online")
    expectNoRaw("send's stderr", r.stderr.split("\n"))
    expectNoRaw("alice's console", aliceNode.stdout)
  }, 20_000)

  it("`history --json` escapes the peer's texts and parses back; `history` shows escapes", async () => {
    const json = await cli(alice, ["history", NAME, "--json"])
    expect(json.code, json.stderr).toBe(0)
    for (const escape of ["\\u0085", "\\u200e", "\\u202e", "\\u007f", "\\u009b", "\\u001b"]) expect(json.stdout).toContain(escape)
    expectNoRaw("history --json", [json.stdout])
    const rows = JSON.parse(json.stdout) as Array<HistoryRow>
    expect(rows.map(({ direction, peer, text }) => ({ direction, peer, text }))).toEqual([
      { direction: "received", peer: NAME, text: TEXT },
      { direction: "sent", peer: NAME, text: REPLY }
    ])
    const text = await cli(alice, ["history", NAME])
    expect(text.code, text.stderr).toBe(0)
    expectNoRaw("history", text.stdout.split("\n"))
    expect(text.stdout).toContain(`${NAME_SHOWN}: ${TEXT_SHOWN}`)
    expect(text.stdout).toContain(`me -> ${NAME_SHOWN}: re:${TEXT_SHOWN} (delivered)`)
  }, 30_000)

  it("`peers` and `peers --json` print nothing raw", async () => {
    const json = await cli(alice, ["peers", "--json"])
    expect((JSON.parse(json.stdout) as Array<{ username: string }>).map((p) => p.username)).toContain(NAME)
    const text = await cli(alice, ["peers"])
    expect(text.stdout).toContain(NAME_SHOWN)
    for (const r of [json, text]) expectNoRaw("peers", r.stdout.split("\n"))
  }, 30_000)
})
