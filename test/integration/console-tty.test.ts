/**
 * The console on a real terminal: `script` gives the node a pseudo-terminal, and this test
 * types at it. An incoming message must print on its own line above the prompt, and the
 * half-typed command must be redrawn and still work when finished. Loopback only.
 */
import { spawnSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import { BIN, LOOPBACK, nodeOptions, nodePair, runCli, sleep, spawnCli, useBuiltCli } from "../support/cli.ts"

const hasScript = spawnSync("script", ["--version"]).status === 0
const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
// eslint-disable-next-line no-control-regex
const CLEAR_LINE = /\x1b\[2K\x1b\[1G/

describe.skipIf(!hasScript)("the console on a terminal", () => {
  useBuiltCli({ cleanupAfterEach: true })

  it("a message arriving while a command is half typed prints above it; the command is redrawn and still runs", async () => {
    const { alice, bob } = await nodePair("p2pchat-tty-")
    const timers = ["--announce-every", "1s", "--log-level", "warning"]
    const line = [process.execPath, BIN, "start", ...nodeOptions(alice), ...timers].map(shellQuote).join(" ")
    const tty = spawnCli([line, "/dev/null"], { command: ["script", "-qfe", "-c"], stdin: "pipe" })
    spawnCli(["start", ...nodeOptions(bob), ...timers], { stdin: "pipe" })
    await tty.waitForLine((l) => l.includes("bob (127.0.0.1) is online"), { timeoutMs: 10_000 })

    tty.child.stdin!.write("who") // half of `whoami`, no Enter yet
    await sleep(300)
    const sent = await runCli(["send", "alice", "incoming while typing", "--name", "bob", "--data-dir", bob.dataDir, "--bind", LOOPBACK])
    expect(sent.code, sent.stderr).toBe(0)
    const { index } = await tty.waitForLine((l) => l.includes("bob (key not verified): incoming while typing"), { timeoutMs: 5000 })

    // The line being typed was cleared before the message: nothing typed is glued to it.
    const messageLine = tty.stdout[index]!.split(CLEAR_LINE).at(-1)!
    expect(messageLine.replace(/\r$/, "")).toMatch(/^\[\d\d:\d\d:\d\d\] bob \(key not verified\): incoming while typing$/)

    // Finishing the word runs `whoami`: the half-typed "who" survived the interruption.
    tty.child.stdin!.write("ami\r")
    const who = await tty.waitForLine((l) => l.includes("fingerprint") && l.includes("alice"), { timeoutMs: 5000, from: index + 1 })
    // ...and the prompt was redrawn with it after the message.
    expect(tty.stdout.slice(index + 1, who.index + 1).join("\n")).toContain("> who")
  }, 30_000)
})
