/**
 * The console reading a script (standard input not a terminal): two nodes on loopback,
 * alice and "Mary Jane" (a name with a space). Alice's `start` reads the lines the test
 * writes once Mary Jane is online, then the end of its input: it waits for its sends and
 * exits, 0 when every command worked and 1 when one failed. With --json every line it
 * prints is JSON. Quoted names, the conversation's rules, tabs, local time (TZ) and the
 * sender's time in the message event are checked on the way. Loopback only.
 */
import { describe, expect, it } from "vitest"
import {
  type CliProcess,
  LOOPBACK,
  nodeOptions,
  nodePair,
  type NodeSpec,
  parseJsonLine,
  runCli,
  sleep,
  spawnCli,
  useBuiltCli
} from "../support/cli.ts"

const TIMERS = ["--announce-every", "1s"]
const MARY = "Mary Jane"

let alice: NodeSpec
let mary: NodeSpec
let maryNode: CliProcess

const exited = (p: CliProcess, ms = 20_000) =>
  Promise.race([p.exited, sleep(ms).then(() => ({ code: -1, signal: null }))])

/** Alice's `start` with `flags`, once Mary Jane is online for it; `lines` then the end of input. */
const script = async (lines: ReadonlyArray<string>, flags: ReadonlyArray<string> = [], env: Record<string, string> = {}) => {
  const node = spawnCli(["start", ...nodeOptions(alice), ...TIMERS, ...flags], { stdin: "pipe", env })
  await node.waitForLine((l) => l.includes(MARY) && l.includes("online"), { timeoutMs: 10_000 })
  node.input(...lines)
  node.child.stdin!.end()
  return { node, exit: await exited(node) }
}

/** Waits until Mary Jane's console shows a message line from alice ending with `text`. */
const maryGot = (text: string) => maryNode.waitForLine((l) => /^\[\d\d:\d\d:\d\d\] alice/.test(l) && l.endsWith(`: ${text}`), { timeoutMs: 8_000 })

useBuiltCli({ cleanupAfterEach: false })

describe("the console reading a script", () => {
  it("starts Mary Jane, whose times are Tokyo's", async () => {
    const pair = await nodePair("p2pchat-script-")
    alice = pair.alice
    mary = { ...pair.bob, name: MARY }
    maryNode = spawnCli(["start", ...nodeOptions(mary), ...TIMERS], { stdin: "pipe", env: { TZ: "Asia/Tokyo" } })
    await maryNode.waitForLine((l) => l.includes("listening on TCP"), { stream: "stderr", timeoutMs: 10_000 })
  }, 20_000)

  it("runs the commands to the end of input and exits 0: quoted names, a conversation, tabs as spaces", async () => {
    const { node, exit } = await script([
      `msg "${MARY}" hello\tthere`,
      `chat '${MARY}'`,
      "help me", // a message: `help` takes no words
      "history", // a command alone: the conversation's history, not a message
      "//quit", // sends "/quit"
      "", // leaves the conversation
      "quit"
    ])
    expect(exit.code, `${node.stdout.join("\n")}\n${node.stderr.join("\n")}`).toBe(0)
    await maryGot("hello there")
    await maryGot("help me")
    await maryGot("/quit")
    const fromAlice = maryNode.stdout.filter((l) => l.includes(" alice"))
    expect(fromAlice.some((l) => l.endsWith(": history"))).toBe(false)
    expect(maryNode.stdout.join("\n")).not.toContain("\uFFFD")
    // `history` ran in the conversation: Mary Jane's messages only, in order, after the sends before it
    const shown = node.stdout.filter((l) => l.startsWith("[20"))
    expect(shown.at(-2)).toMatch(/ me -> mary jane: hello there \(delivered\) \(key not verified\)$/)
    expect(shown.at(-1)).toMatch(/ me -> mary jane: help me \(delivered\) \(key not verified\)$/)
    expect(node.stdout).toContain(`left the conversation with ${MARY}`)
  }, 40_000)

  it("a failed command makes the exit 1, with how many failed; the rest still runs", async () => {
    const { node, exit } = await script([`msg "${MARY}"`, "bogus", "msg nobody hi", `msg "${MARY}" still sent`])
    expect(exit.code).toBe(1)
    expect(node.stdout).toContain("usage: msg USER TEXT")
    expect(node.stdout).toContain("! unknown command 'bogus'; 'help' lists them")
    expect(node.stdout.some((l) => l.startsWith("! not delivered: no user 'nobody'"))).toBe(true)
    expect(node.stderr.join("\n")).toContain("p2pchat: 3 command(s) failed")
    await maryGot("still sent")
  }, 40_000)

  it("with --json every line on stdout is JSON, results included; the message event has the sender's time", async () => {
    const node = spawnCli(["start", ...nodeOptions(alice), ...TIMERS, "--json"], { stdin: "pipe" })
    await node.waitForJson((e) => e.event === "peer" && e.username === MARY && e.status === "online", 10_000)
    node.input("users", "whoami", `msg "${MARY}" json hello`, "bogus", "help")
    maryNode.input("msg alice from mary")
    const message = await node.waitForJson((e) => e.event === "message" && e.text === "from mary", 10_000)
    expect(Math.abs(Date.parse(message.value.sentAt) - Date.parse(message.value.at))).toBeLessThan(5_000)
    await node.waitForJson((e) => e.event === "delivered" && e.to === MARY, 10_000)
    node.child.stdin!.end()
    const exit = await exited(node)
    expect(exit.code).toBe(1) // bogus
    const values = node.stdout.filter((l) => l !== "").map((l) => [l, parseJsonLine(l)] as const)
    expect(values.filter(([, v]) => v === undefined).map(([l]) => l)).toEqual([])
    const parsed = values.map(([, v]) => v)
    const users = parsed.find((v) => Array.isArray(v))
    expect(users?.some((p: { username: string }) => p.username === MARY)).toBe(true)
    expect(parsed).toContainEqual(expect.objectContaining({ username: "alice", udpPort: alice.udpPort }))
    expect(parsed).toContainEqual({ event: "error", message: "unknown command 'bogus'; 'help' lists them" })
    expect(parsed.filter((v) => v.event === "info").length).toBeGreaterThan(5) // the help
  }, 40_000)

  it("Mary Jane's console and `history` show local time (TZ=Asia/Tokyo), not UTC", async () => {
    const json = await runCli(["history", "alice", "--json", ...nodeOptions(mary)])
    expect(json.code, json.stderr).toBe(0)
    const rows = JSON.parse(json.stdout) as Array<{ at: string; text: string; direction: string }>
    const received = rows.find((r) => r.text === "hello\tthere")! // kept as sent; shown with a space
    const tokyo = (iso: string) => new Date(Date.parse(iso) + 9 * 3600_000).toISOString().replace("T", " ").slice(0, 19)
    const line = maryNode.stdout.find((l) => l.endsWith(": hello there"))!
    // the arrival time on the console (the time stored) is Tokyo's
    expect(line.slice(0, 10)).toBe(`[${tokyo(received.at).slice(11)}]`)
    const text = await runCli(["history", "alice", ...nodeOptions(mary)], { env: { TZ: "Asia/Tokyo" } })
    expect(text.stdout.split("\n")).toContain(`[${tokyo(received.at)}] alice: hello there (key not verified)`)
  }, 20_000)

  it("a group from the console: group create, msg #NAME, a #NAME conversation, history #NAME", async () => {
    // alice pinned Mary Jane's key in the secure sessions above: she can be a member
    const { node, exit } = await script([
      `group create team "${MARY}"`,
      "msg #team hello team",
      "chat #team",
      "a line in the team's conversation",
      "",
      "history #team",
      "quit"
    ])
    expect(exit.code, `${node.stdout.join("\n")}\n${node.stderr.join("\n")}`).toBe(0)
    // Mary Jane's console shows both as alice's, in the group
    for (const text of ["hello team", "a line in the team's conversation"]) {
      await maryNode.waitForLine((l) => /^\[\d\d:\d\d:\d\d\] alice/.test(l) && l.includes(" in #team") && l.endsWith(`: ${text}`), { timeoutMs: 8_000 })
    }
    // alice's `history #team`: each message once, delivered to Mary Jane
    const shown = node.stdout.filter((l) => l.startsWith("[20") && l.includes("#team"))
    expect(shown.some((l) => l.includes("me -> #team: hello team") && l.includes("delivered to mary jane"))).toBe(true)
    expect(shown.some((l) => l.includes("me -> #team: a line in the team's conversation"))).toBe(true)
    // and Mary Jane holds the group too
    const groups = await runCli(["group", "list", "--json", ...nodeOptions(mary)])
    expect(groups.code, groups.stderr).toBe(0)
    expect(groups.stdout).toContain('"team"')
  }, 40_000)

  it("with standard input /dev/null, `start` serves until stopped", async () => {
    const node = spawnCli(["start", ...nodeOptions(alice), ...TIMERS])
    await node.waitForLine((l) => l === `* ${MARY} (${LOOPBACK}) is online`, { timeoutMs: 10_000 })
    await sleep(1_500)
    expect(node.running()).toBe(true)
    await node.stop()
  }, 20_000)
})
