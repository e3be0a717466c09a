/**
 * The console on a real terminal: `script` gives the node a pseudo-terminal, and these tests
 * type at it (keys, Ctrl-C, Ctrl-D, Tab, bracketed pastes) while a second node (bob, its
 * console read from a pipe) sends to it. What the terminal shows is read from the raw
 * output: every piece drawn after a clear (the console's redraw) or a line break, without
 * escapes. Loopback only.
 */
import { spawnSync } from "node:child_process"
import * as dgram from "node:dgram"
import { stripVTControlCharacters } from "node:util"
import { describe, expect, it } from "vitest"
import {
  BIN,
  type CliProcess,
  LOOPBACK,
  nodeOptions,
  nodePair,
  type NodeSpec,
  runCli,
  sleep,
  spawnCli,
  tempDir,
  useBuiltCli,
  waitFor
} from "../support/cli.ts"

const hasScript = spawnSync("script", ["--version"]).status === 0
const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
const TIMERS = ["--announce-every", "1s", "--log-level", "warning"]

/** A clear of the line (the console's or the line editor's redraw), or a line break. */
// eslint-disable-next-line no-control-regex
const BREAK = /\x1b\[1G\x1b\[0J|\x1b\[2K\x1b\[1G|\n/

/** Every piece of text the terminal was given to show, in order, without escapes. */
const piecesOf = (raw: string): Array<string> =>
  raw.split(BREAK).map((p) => stripVTControlCharacters(p).replace(/\r/g, "").trimEnd()).filter((p) => p !== "")

interface Tty {
  readonly proc: CliProcess
  readonly raw: () => string
  readonly pieces: () => Array<string>
  readonly type: (keys: string) => void
  /** Waits for a piece shown (after index `from` of `pieces()`) that matches; its index. */
  readonly shown: (match: (piece: string) => boolean, from?: number, timeoutMs?: number) => Promise<number>
}

/** `p2pchat start` (or `args`) on a pseudo-terminal. */
const onTerminal = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Tty => {
  const line = [process.execPath, BIN, ...args].map(shellQuote).join(" ")
  const proc = spawnCli([line, "/dev/null"], { command: ["script", "-qfe", "-c"], stdin: "pipe", env })
  let raw = ""
  proc.child.stdout!.on("data", (chunk: string) => void (raw += chunk))
  const pieces = () => piecesOf(raw)
  return {
    proc,
    raw: () => raw,
    pieces,
    type: (keys) => void proc.child.stdin!.write(keys),
    shown: (match, from = 0, timeoutMs = 8_000) =>
      waitFor(`a piece on alice's terminal to match ${match}`, () => {
        const i = pieces().findIndex((p, n) => n >= from && match(p))
        return i >= 0 ? i : undefined
      }, timeoutMs).catch((e: Error) => Promise.reject(new Error(`${e.message}\nterminal:\n${pieces().join("\n")}`)))
  }
}

const startBob = (bob: NodeSpec) => spawnCli(["start", ...nodeOptions(bob), ...TIMERS], { stdin: "pipe" })

/** Alice on a terminal and bob beside her, each seeing the other online. */
const pair = async (env: Record<string, string> = {}, aliceFlags: ReadonlyArray<string> = TIMERS) => {
  const { alice, bob } = await nodePair("p2pchat-tty-")
  const tty = onTerminal(["start", ...nodeOptions(alice), ...aliceFlags], env)
  const bobNode = startBob(bob)
  await tty.shown((p) => p === "* bob (127.0.0.1) is online", 0, 10_000)
  await bobNode.waitForLine((l) => l === "* alice (127.0.0.1) is online", { timeoutMs: 10_000 })
  return { alice, bob, tty, bobNode }
}

describe.skipIf(!hasScript)("the console on a terminal", () => {
  useBuiltCli({ cleanupAfterEach: true })

  it("a message arriving while a command is half typed prints above it; the command is redrawn and still runs", async () => {
    const { bob, tty } = await pair({ NO_COLOR: "1" })
    tty.type("who") // half of `whoami`, no Enter yet
    await sleep(300)
    const sent = await runCli(["send", "alice", "incoming while typing", "--name", "bob", "--data-dir", bob.dataDir, "--bind", LOOPBACK])
    expect(sent.code, sent.stderr).toBe(0)
    const index = await tty.shown((p) => p.includes("incoming while typing"))
    // The line being typed was cleared before the message: nothing typed is glued to it.
    expect(tty.pieces()[index]).toMatch(/^\[\d\d:\d\d:\d\d\] bob \(key not verified\): incoming while typing$/)
    // ...and drawn again after it, with what was typed.
    // (the redraw, the bell and the prompt again with the unread count come a moment later,
    // in one piece or several)
    await tty.shown((p) => p.replaceAll("\u0007", "") === "> who", index + 1)
    await tty.shown((p) => p.replaceAll("\u0007", "") === "(1 unread) > who", index + 1)
    // Finishing the word runs `whoami`: the half-typed "who" survived the interruption.
    tty.type("ami\r")
    await tty.shown((p) => p.includes("fingerprint") && p.startsWith("alice"), index + 1)
    // no colour asked for (NO_COLOR): no SGR sequence at all
    expect(tty.raw()).not.toMatch(/\x1b\[[\d;]*m/)
  }, 30_000)

  it("Ctrl-C clears the line, or says how to leave; the console goes on; Ctrl-D at an empty line leaves (bye, exit 0)", async () => {
    const { bobNode, tty } = await pair()
    tty.type("whoami")
    await sleep(200)
    tty.type("\x03") // the line is cleared, not run
    await sleep(200)
    tty.type("\x03") // at an empty line: how to leave
    const hint = await tty.shown((p) => p === "(press Ctrl-D or type /quit to leave)")
    expect(tty.pieces().slice(0, hint).some((p) => p.startsWith("alice ") && p.includes("fingerprint"))).toBe(false)
    // the console still reads commands
    tty.type("whoami\r")
    await tty.shown((p) => p.startsWith("alice ") && p.includes("fingerprint"), hint)
    expect(tty.proc.running()).toBe(true)
    tty.type("\x04")
    const { code } = await Promise.race([tty.proc.exited, sleep(8_000).then(() => ({ code: -1 }))])
    expect(code, tty.pieces().join("\n")).toBe(0)
    await bobNode.waitForLine((l) => l === "* alice (127.0.0.1) left", { timeoutMs: 5_000 })
    expect(tty.pieces().join("\n")).not.toMatch(/Error|\n\s+at /)
  }, 30_000)

  it("in a conversation, a paste is one message (blank lines and command words inside); a long one asks first; Ctrl-D leaves", async () => {
    const { bobNode, tty } = await pair()
    tty.type("chat bob\r")
    await tty.shown((p) => p.startsWith("chatting with bob (secure)"))
    tty.type("\x1b[200~first line\r\rwhoami\r/quit\x1b[201~")
    await bobNode.waitForLine((l) => /^\[\d\d:\d\d:\d\d\] alice \(key not verified\): first line$/.test(l), { timeoutMs: 8_000 })
    const at = bobNode.stdout.findIndex((l) => l.endsWith(": first line"))
    await bobNode.waitForLine((l) => l === "  | /quit", { from: at, timeoutMs: 3_000 })
    expect(bobNode.stdout.slice(at + 1, at + 4)).toEqual(["  | ", "  | whoami", "  | /quit"])
    // nothing of it ran on alice's side, and she is still there
    await sleep(300)
    expect(tty.pieces().some((p) => p.startsWith("alice ") && p.includes("fingerprint"))).toBe(false)
    expect(tty.proc.running()).toBe(true)

    const seven = ["one", "two", "three", "four", "five", "six", "seven"].join("\r")
    tty.type(`\x1b[200~${seven}\x1b[201~`)
    await tty.shown((p) => p.includes("send these 7 lines to bob as one message? [y/N]"))
    tty.type("n\r")
    await tty.shown((p) => p === "not sent")
    tty.type(`\x1b[200~${seven}\x1b[201~`)
    const asked = await tty.shown((p) => p.includes("send these 7 lines"))
    tty.type("y\r")
    await bobNode.waitForLine((l) => l.endsWith(": one"), { timeoutMs: 8_000 })
    await bobNode.waitForLine((l) => l === "  | seven", { timeoutMs: 3_000 })
    expect(bobNode.stdout.filter((l) => l.endsWith(": one"))).toHaveLength(1)
    expect(asked).toBeGreaterThan(0)

    tty.type("\x04") // Ctrl-D inside the conversation leaves too
    const { code } = await Promise.race([tty.proc.exited, sleep(8_000).then(() => ({ code: -1 }))])
    expect(code).toBe(0)
  }, 40_000)

  it("a message outside the current conversation rings and counts as unread; Tab completes commands and names; names are coloured", async () => {
    const { bobNode, tty } = await pair()
    bobNode.input("msg alice are you there?")
    await tty.shown((p) => p.includes(": are you there?"))
    expect(tty.raw()).toContain("\x07")
    // the prompt says one is unread (shown again when the next line is printed)
    tty.type("\x03")
    await tty.shown((p) => p === "(1 unread) >")
    tty.type("ch")
    await sleep(150)
    tty.type("\t")
    await sleep(150)
    tty.type("b")
    await sleep(150)
    tty.type("\t")
    await sleep(150)
    tty.type("\r")
    const chatting = await tty.shown((p) => p.startsWith("chatting with bob"))
    // what was typed: `ch`, Tab, `b`, Tab, Enter
    expect(tty.pieces().slice(0, chatting)).toContain("(1 unread) > chat bob")
    // bob is current now, and read: the prompt says so
    tty.type("\x03")
    await tty.shown((p) => p === "[bob] >", chatting)
    // a name has its colour, the same each time
    const coloured = tty.raw().match(/\x1b\[(\d+)mbob\x1b\[0m/g) ?? []
    expect(coloured.length).toBeGreaterThan(1)
    expect(new Set(coloured).size).toBe(1)
  }, 30_000)

  it("log lines print above the line being typed, and a log line saying what an event line says is not shown", async () => {
    const { bobNode, tty, alice } = await pair({}, ["--announce-every", "1s", "--log-level", "info"])
    tty.type("who")
    await sleep(200)
    // a datagram that is not an announcement: discovery logs a warning (no event says it)
    const socket = dgram.createSocket("udp4")
    await new Promise<void>((resolve) => socket.send("not an announcement", alice.udpPort, LOOPBACK, () => resolve()))
    socket.close()
    const logged = await tty.shown((p) => p.includes("discovery: dropped datagram"))
    expect(tty.pieces()[logged]).toMatch(/^p2pchat \[warn\] discovery: dropped datagram from 127\.0\.0\.1:\d+: /)
    // drawn again after it (the redraw may come a moment after the log line)
    await tty.shown((p) => p === "> who", logged + 1)
    tty.type("ami\r")
    await tty.shown((p) => p.startsWith("alice ") && p.includes("fingerprint"), logged)
    // a secure session from bob: the event line says it, the log line does not say it again
    bobNode.input("msg alice hello")
    await tty.shown((p) => p.endsWith(": hello"))
    await sleep(600)
    const all = tty.pieces()
    expect(all.filter((p) => p.startsWith("secure session from bob, fingerprint"))).toHaveLength(1)
    expect(all.filter((p) => p.includes("responder: secure session from bob"))).toEqual([])
  }, 30_000)

  it("Ctrl-C at `Enter your username:` exits 130, Ctrl-D exits 0, without a stack trace", async () => {
    for (const [key, expected] of [["\x03", 130], ["\x04", 0]] as const) {
      const dataDir = tempDir("p2pchat-tty-noname-")
      const tty = onTerminal(["start", "--data-dir", dataDir, "--bind", LOOPBACK, "--udp-port", "0", "--tcp-port", "0"])
      await tty.shown((p) => p.startsWith("Enter your username:"))
      tty.type(key)
      const { code } = await Promise.race([tty.proc.exited, sleep(8_000).then(() => ({ code: -1 }))])
      expect(code, tty.pieces().join("\n")).toBe(expected)
      expect(tty.pieces().join("\n")).not.toMatch(/AbortError|\n\s+at /)
    }
  }, 30_000)
})
