/**
 * Chat end to end through the CLI, as a person would use it: two `p2pchat start` nodes
 * (alice and bob) on loopback, each with its own data dir and free ports, targeting each
 * other, driven through their standard input (the console reads one command a line when
 * stdin is not a terminal). They chat both ways in every mode:
 *
 *   plain    console `chat USER`, `unsecure`, message lines, an empty line
 *   classic  a separate `p2pchat send USER TEXT --classic` process using the sender's data dir
 *   secure   console `msg USER TEXT` (secure by default between p2pchat nodes), and
 *            console `chat USER` answered `secure`
 *
 * Then `history --json` must show the whole conversation in order, with modes and states,
 * on both sides, and again, unchanged, after both nodes are stopped (SIGTERM) and started.
 * The steps share the two nodes and run in order; each is its own test so that a failing
 * mode does not hide the others.
 *
 * Loopback only: every node gets `--bind 127.0.0.1` and a 127.0.0.1 target.
 */
import { beforeAll, describe, expect, it } from "vitest"
import {
  type CliProcess,
  type HistoryRow,
  LOOPBACK,
  type Mode,
  nodeOptions,
  nodePair,
  type NodeSpec,
  runCli,
  type RunResult,
  sleep,
  spawnCli,
  useBuiltCli,
  waitFor
} from "../support/cli.ts"

/** One message the test sent, in the order it was sent. */
interface Sent {
  readonly from: string
  readonly to: string
  readonly text: string
  readonly mode: Mode
}

/** The one set of options every command gets (CLI.md: every command accepts every option). */
const optionsOf = (n: NodeSpec): Array<string> => [...nodeOptions(n), "--announce-every", "1s"]

const startNode = (n: NodeSpec): CliProcess => spawnCli(["start", ...optionsOf(n)], { stdin: "pipe" })

const cli = (n: NodeSpec, args: ReadonlyArray<string>, timeoutMs = 15_000): Promise<RunResult> =>
  runCli([...args, ...optionsOf(n)], { timeoutMs })

const historyOf = async (n: NodeSpec, peer?: string): Promise<Array<HistoryRow>> => {
  const r = await cli(n, ["history", ...(peer === undefined ? [] : [peer]), "--json"])
  expect(r.code, `history --json on ${n.name}: ${r.stderr}`).toBe(0)
  return JSON.parse(r.stdout) as Array<HistoryRow>
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** What a received message looks like on the console: `[HH:MM:SS] from (marker): text`. */
const messageLine = (from: string, text: string) =>
  new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\] ${escapeRegExp(from)}( \\((unencrypted|classic, not secure|key not verified)\\))?: ${escapeRegExp(text)}$`)

/** The mode a received console line shows (the marker after the sender's name). */
const modeShown = (line: string): Mode =>
  line.includes(" (unencrypted): ") ? "plain" : line.includes(" (classic, not secure): ") ? "classic-3des" : "noise"

const countLines = (node: CliProcess, match: (line: string) => boolean, from = 0) =>
  node.stdout.slice(from).filter(match).length

const isDelivered = (to: string) => (line: string) => line.trim() === `delivered to ${to}`
const isNotDelivered = (line: string) => line.startsWith("! not delivered")

let alice: NodeSpec
let bob: NodeSpec
const nodes = new Map<string, CliProcess>()
const specs = new Map<string, NodeSpec>()
/** Every message the test sent, in order: what both histories must show. */
const conversation: Array<Sent> = []

const node = (name: string) => nodes.get(name)!
const spec = (name: string) => specs.get(name)!

/**
 * Waits until `to`'s console shows `text` from `from`, or fails early with the reason the
 * sender's console gave ("! not delivered: ..."). Returns the receiver's line.
 */
const arrival = async (from: string, to: string, text: string, senderFrom: number, timeoutMs = 10_000) => {
  const sender = node(from)
  const match = messageLine(from, text)
  const failure = sender.waitForLine(isNotDelivered, { from: senderFrom, timeoutMs }).then(
    (r) => Promise.reject(new Error(`${from} could not send '${text}' to ${to}: ${r.line}`)),
    () => new Promise<never>(() => {}) // no failure line: let the arrival decide
  )
  const arrived = node(to).waitForLine((l) => match.test(l), { timeoutMs })
  return (await Promise.race([arrived, failure])).line
}

/** Console `chat TO`, `unsecure` or `secure`, the lines, then an empty line to end the chat. */
const consoleChat = async (from: string, to: string, answer: "secure" | "unsecure", lines: ReadonlyArray<string>) => {
  const mode: Mode = answer === "unsecure" ? "plain" : "noise"
  const sender = node(from)
  const start = sender.stdout.length
  const deliveredBefore = countLines(sender, isDelivered(to))
  sender.input(`chat ${to}`, answer, ...lines, "")
  for (const text of lines) {
    conversation.push({ from, to, text, mode })
    const line = await arrival(from, to, text, start)
    expect.soft(modeShown(line), `${to} shows '${text}' as`).toBe(mode)
  }
  // The sender's console says each one was delivered (acked).
  await waitFor(`${from} to show ${lines.length} more 'delivered to ${to}'`, () =>
    countLines(sender, isDelivered(to)) >= deliveredBefore + lines.length ? true : undefined, 5_000)
  if (answer === "unsecure") {
    expect(sender.stdout.slice(start).some((l) => /unsecure: the messages cross the LAN unencrypted/.test(l))).toBe(true)
  }
}

/** Console `msg TO TEXT`: secure by default between p2pchat nodes. */
const consoleMsg = async (from: string, to: string, text: string) => {
  const sender = node(from)
  const start = sender.stdout.length
  const deliveredBefore = countLines(sender, isDelivered(to))
  conversation.push({ from, to, text, mode: "noise" })
  sender.input(`msg ${to} ${text}`)
  const line = await arrival(from, to, text, start)
  expect.soft(modeShown(line), `msg: ${to} shows '${text}' as`).toBe("noise")
  // the keys were pinned on first use, and nobody compared fingerprints
  expect.soft(line, "a secure line from a key not verified says so").toContain(" (key not verified): ")
  await waitFor(`${from} to show 'delivered to ${to}'`, () =>
    countLines(sender, isDelivered(to)) > deliveredBefore ? true : undefined, 5_000)
}

/** `p2pchat send TO TEXT --classic` from a separate process with the sender's data dir. */
const sendClassic = async (from: string, to: string, text: string) => {
  conversation.push({ from, to, text, mode: "classic-3des" })
  const r = await cli(spec(from), ["send", to, text, "--classic"])
  expect(r.code, `send --classic ${from} -> ${to}: ${r.stderr}`).toBe(0)
  expect(r.stdout).toContain(`delivered to ${to}`)
  // Issue 4: wherever classic encryption is used, the user is told plainly it is not secure.
  expect.soft(`${r.stdout}\n${r.stderr}`, "send --classic must warn that classic encryption is not secure").toMatch(/NOT secure/i)
  const line = await node(to).waitForLine((l) => messageLine(from, text).test(l), { timeoutMs: 5_000 })
  expect(modeShown(line.line)).toBe("classic-3des")
}

/** What `history PEER --json` on `self` must show, from the messages sent. */
const expectedHistory = (self: string, peer: string) =>
  conversation
    .filter((m) => (m.from === self && m.to === peer) || (m.from === peer && m.to === self))
    .map((m) =>
      m.from === self
        ? { peer, direction: "sent", text: m.text, mode: m.mode, state: "delivered" }
        : { peer, direction: "received", text: m.text, mode: m.mode, state: "received" }
    )

const shape = (rows: ReadonlyArray<HistoryRow>) =>
  rows.map(({ direction, mode, peer, state, text }) => ({ peer, direction, text, mode, state }))

// The steps share the two nodes: cleaned up after the file, not after each test.
useBuiltCli({ cleanupAfterEach: false })

beforeAll(async () => {
  ;({ alice, bob } = await nodePair("p2pchat-cli-"))
  specs.set("alice", alice)
  specs.set("bob", bob)
})

/** Starts both nodes and waits until each console shows the other online. */
const startBoth = async () => {
  for (const n of [alice, bob]) nodes.set(n.name, startNode(n))
  await Promise.all([
    node("alice").waitForLine((l) => l === `* bob (${LOOPBACK}) is online`, { timeoutMs: 6_000 }),
    node("bob").waitForLine((l) => l === `* alice (${LOOPBACK}) is online`, { timeoutMs: 6_000 })
  ])
}

describe("two CLI nodes chat through their consoles", () => {
  it("start, and see each other online, also in the peers snapshot that `send` uses", async () => {
    await startBoth()
    // `send` runs in another process and reads the peers the node saved in its data dir.
    for (const [self, other] of [[alice, bob], [bob, alice]] as const) {
      await waitFor(`${other.name} in ${self.name}'s saved peers`, async () => {
        const r = await cli(self, ["peers", "--json"])
        expect(r.code, r.stderr).toBe(0)
        const rows = JSON.parse(r.stdout) as Array<{ username: string; status: string; port: number; proto: string }>
        return rows.find((p) => p.username === other.name && p.status === "online")
      }, 5_000, 100).then((row) => expect(row).toMatchObject({ port: other.tcpPort, proto: "p2pchat/1" }))
    }
  }, 30_000)

  it("plain both ways: console `chat USER`, `unsecure`, the lines, an empty line", async () => {
    await consoleChat("alice", "bob", "unsecure", ["hello bob, in plain", "a second plain line: ça va? ✓"])
    await consoleChat("bob", "alice", "unsecure", ["hi alice, plain back", "spaces  inside   kept"])
  }, 30_000)

  it("classic both ways: `p2pchat send USER TEXT --classic` beside the running node", async () => {
    await sendClassic("alice", "bob", "classic from alice {\"json\": \"inside\"}")
    await sendClassic("bob", "alice", "classic from bob, ünïcødé")
  }, 30_000)

  it("secure both ways: console `msg USER TEXT` (secure by default), and `chat USER` + `secure`", async () => {
    await consoleMsg("alice", "bob", "secure hello from alice")
    await consoleMsg("bob", "alice", "secure hello from bob")
    await consoleChat("bob", "alice", "secure", ["secure chat line from bob"])
  }, 40_000)

  it("`send` to an unknown user exits 1 with a clear message; two mode flags exit 2", async () => {
    const unknown = await cli(alice, ["send", "carol", "are you there?"])
    expect(unknown.code, unknown.stdout).toBe(1)
    expect(unknown.stderr).toMatch(/no user 'carol'/)

    for (const flags of [["--plain", "--classic"], ["--secure", "--plain"], ["--secure", "--classic"]]) {
      const twoModes = await cli(alice, ["send", "bob", "which mode?", ...flags])
      expect(twoModes.code, `${flags.join(" ")}: ${twoModes.stdout}${twoModes.stderr}`).toBe(2)
      expect(twoModes.stderr).toMatch(/choose one of --secure, --plain, --classic/)
    }
    // Neither sent anything.
    await sleep(300)
    expect(countLines(node("bob"), (l) => l.endsWith(": which mode?"))).toBe(0)
  }, 30_000)

  it("`history USER --json` shows the whole conversation in order, with modes and states, on both sides", async () => {
    const a = await historyOf(alice, "bob")
    const b = await historyOf(bob, "alice")
    expect(shape(a)).toEqual(expectedHistory("alice", "bob"))
    expect(shape(b)).toEqual(expectedHistory("bob", "alice"))
    // One id per message, the same on both sides; times in order.
    expect(new Set(a.map((r) => r.id)).size).toBe(a.length)
    expect(a.map((r) => r.id)).toEqual(b.map((r) => r.id))
    for (const rows of [a, b]) {
      const times = rows.map((r) => Date.parse(r.at))
      expect(times.every((t) => Number.isFinite(t))).toBe(true)
      expect(times).toEqual([...times].sort((x, y) => x - y))
    }
    // Every message showed exactly once on its receiver's console.
    for (const m of conversation) {
      expect(countLines(node(m.to), (l) => messageLine(m.from, m.text).test(l)), `'${m.text}' on ${m.to}`).toBe(1)
    }
    // The console's own `history bob` shows them too.
    const start = node("alice").stdout.length
    node("alice").input("history bob")
    const last = conversation.filter((m) => m.from === "alice" || m.to === "alice").at(-1)!
    await node("alice").waitForLine((l) => l.includes(`: ${last.text}`) && l.startsWith("[20"), { from: start, timeoutMs: 3_000 })
  }, 30_000)

  it("after both stop (SIGTERM) and start again, `history --json` on both is complete and unchanged", async () => {
    const before = { alice: await historyOf(alice), bob: await historyOf(bob) }
    expect(before.alice.length).toBeGreaterThan(0)

    const exits = await Promise.all([node("alice").stop("SIGTERM"), node("bob").stop("SIGTERM")])
    // They shut down on SIGTERM by themselves, within the 2 s grace (no SIGKILL).
    for (const e of exits) expect(e.signal).toBeNull()

    // Nothing lost or changed while stopped.
    expect(await historyOf(alice)).toEqual(before.alice)
    expect(await historyOf(bob)).toEqual(before.bob)

    await startBoth()
    // A couple of announcements each way: time for any retry that would (wrongly) resend.
    await sleep(2_500)
    const after = { alice: await historyOf(alice), bob: await historyOf(bob) }
    expect(after.alice).toEqual(before.alice)
    expect(after.bob).toEqual(before.bob)
    for (const rows of [after.alice, after.bob]) expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length)
    // And nothing was shown again on either console.
    for (const n of ["alice", "bob"]) expect(node(n).stdout.filter((l) => /^\[\d\d:\d\d:\d\d\] /.test(l))).toEqual([])
  }, 40_000)
})
