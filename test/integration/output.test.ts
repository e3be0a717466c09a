/**
 * Everything a command prints reaches its reader before the process exits, however large
 * the output and however slowly it is read: `p2pchat history --json | jq` must never see
 * an array cut mid-string. Writes to a pipe are asynchronous in Node (libuv queues what
 * the pipe cannot take at once); a process that calls `process.exit` with writes still
 * queued loses them.
 *
 * One data dir holds about 10 MB of history (written in this process through History over
 * Store). Then the built CLI runs with stdout:
 *   - piped to a deliberately slow reader (a child that waits, then reads 8 KiB at a time
 *     with a pause after each read), as `p2pchat ... | jq` would be: `history --json`,
 *     `history` (text), and the console of `start` (`history` typed, then `quit`);
 *   - redirected to a file;
 *   - piped to this test, which does not read at first, sends SIGTERM to `start` while its
 *     output waits, and reads only then: the output is whole and the exit code is 143.
 * The exit codes of docs/cli.md (0, 1, 2) are checked through the pipe as well.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import * as History from "../../src/services/History.ts"
import * as Store from "../../src/services/Store.ts"
import {
  BIN,
  freePort,
  type HistoryRow,
  LOOPBACK,
  nodeOptions,
  type NodeSpec,
  runCli,
  type RunResult,
  sleep,
  spawnCli,
  tempDir,
  useBuiltCli,
  waitFor
} from "../support/cli.ts"

useBuiltCli({ cleanupAfterEach: false })

/** About 10 MB of history: MESSAGES messages of about TEXT_CHARS characters each. */
const MESSAGES = 2_000
const TEXT_CHARS = 5_000

/** Characters JSON must escape or encode in several bytes, so that a cut can fall anywhere. */
const FILLER = "plain words, \"quotes\", back\\slashes, tabs\t, accents é ü, emoji 🦊, CJK 漢字; "

const textOf = (i: number): string => {
  const head = `message ${i} `
  return (head + FILLER.repeat(Math.ceil(TEXT_CHARS / FILLER.length))).slice(0, TEXT_CHARS) + ` end ${i}`
}

const ID_PREFIX = "00000000-0000-4000-8000-"
const idOf = (i: number) => `${ID_PREFIX}${String(i).padStart(12, "0")}`
const peerOf = (i: number) => (i % 3 === 0 ? "bob" : "carol")

let dataDir: string

/** Writes the history: odd messages received, even ones sent (pending), in order. */
const seed = (dir: string) =>
  Effect.gen(function*() {
    const history = yield* History.History
    const at = new Date("2026-12-01T13:24:26.000Z")
    for (let i = 0; i < MESSAGES; i++) {
      const m = { id: idOf(i), peer: peerOf(i), text: textOf(i), at: new Date(at.getTime() + i), mode: "noise" as const }
      if (i % 2 === 0) yield* history.recordSent(m)
      else yield* history.recordReceived(m)
    }
  }).pipe(Effect.provide(History.layer.pipe(Layer.provide(Store.layer(dir)))))

beforeAll(async () => {
  dataDir = tempDir("p2pchat-output-")
  await Effect.runPromise(seed(dataDir))
}, 60_000)

/** The whole history, as `history --json` must print it. */
const checkHistory = (rows: Array<HistoryRow>) => {
  expect(rows.length).toBe(MESSAGES)
  rows.forEach((row, i) => {
    if (row.id !== idOf(i) || row.text !== textOf(i) || row.peer !== peerOf(i)) {
      expect.fail(`row ${i} is not message ${i}: ${JSON.stringify(row).slice(0, 200)}`)
    }
  })
  expect(rows.filter((r) => r.direction === "sent").length).toBe(MESSAGES / 2)
}

/** Parses what a reader got, or fails with where it was cut. */
const parseWhole = (out: string): any => {
  try {
    return JSON.parse(out)
  } catch (e) {
    return expect.fail(`output of ${out.length} characters is not whole JSON (${(e as Error).message}); it ends with ${JSON.stringify(out.slice(-80))}`)
  }
}

/**
 * The slow reader: waits FIRST_MS before its first read (the writer has filled the pipe
 * by then, and a writer that does not wait for its output has exited), then reads 8 KiB
 * at a time, pausing 1 ms after each read, and copies what it reads to SLOW_OUT.
 */
const SLOW_READER = `
const fs = require("node:fs")
const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
const out = fs.openSync(process.env.SLOW_OUT, "w")
const buf = Buffer.alloc(8192)
pause(Number(process.env.SLOW_FIRST_MS))
for (;;) {
  let n
  try {
    n = fs.readSync(0, buf, 0, buf.length, null)
  } catch (e) {
    if (e.code === "EAGAIN") { pause(5); continue }
    throw e
  }
  if (n === 0) break
  fs.writeSync(out, buf, 0, n)
  pause(1)
}
fs.closeSync(out)
`

/** `node bin/p2pchat.js ARGS | slow reader`; exits with the CLI's code (99 when the reader failed). */
const PIPED = `"$@" | "$SLOW_NODE" -e "$SLOW_READER"; codes=("\${PIPESTATUS[@]}"); [ "\${codes[1]}" = 0 ] || exit 99; exit "\${codes[0]}"`
/** `node bin/p2pchat.js ARGS > file`. */
const REDIRECTED = `"$@" > "$SLOW_OUT"`

interface Captured extends RunResult {
  /** Everything the CLI wrote to stdout, as the reader (or the file) got it. */
  readonly out: string
}

const shell = (script: string, env: Record<string, string> = {}) => {
  const outFile = path.join(tempDir("p2pchat-output-read-"), "stdout")
  return {
    outFile,
    options: {
      command: ["bash", "-c", script, "bash", process.execPath, BIN],
      env: { SLOW_NODE: process.execPath, SLOW_READER, SLOW_OUT: outFile, SLOW_FIRST_MS: "500", ...env }
    }
  }
}

const run = async (script: string, args: ReadonlyArray<string>): Promise<Captured> => {
  const { options, outFile } = shell(script)
  const r = await runCli(args, { ...options, timeoutMs: 60_000 })
  return { ...r, out: fs.existsSync(outFile) ? fs.readFileSync(outFile, "utf8") : "" }
}

const piped = (args: ReadonlyArray<string>) => run(PIPED, args)
const redirected = (args: ReadonlyArray<string>) => run(REDIRECTED, args)

const history = (...more: Array<string>) => ["history", "--data-dir", dataDir, ...more]

describe("output of a command is whole when the process exits", () => {
  it("history --json piped to a slow reader: the whole array, exit 0", async () => {
    const r = await piped(history("--json"))
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    checkHistory(parseWhole(r.out))
  }, 60_000)

  it("history --json redirected to a file: the whole array, exit 0", async () => {
    const r = await redirected(history("--json"))
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    checkHistory(parseWhole(r.out))
  }, 60_000)

  it("history (text) piped to a slow reader: one whole line per message", async () => {
    const r = await piped(history())
    expect(r.code, r.stderr).toBe(0)
    const lines = r.out.split("\n")
    const last = lines.pop()! // "" when the output ends with a newline: the last line is whole
    expect(last === "", `output of ${r.out.length} characters cut in line ${lines.length}: ...${last.slice(-80)}`).toBe(true)
    expect(lines.length).toBe(MESSAGES)
    expect(lines[MESSAGES - 1]).toMatch(new RegExp(`^\\[2026-12-01 13:24:2\\d\\] (me -> )?(bob|carol): message ${MESSAGES - 1} .* end ${MESSAGES - 1}( \\(pending\\))? \\(key not verified\\)$`))
  }, 60_000)

  it("history piped to a reader that stops after one line (head -1): that line, exit 0, no error", async () => {
    const r = await run(`"$@" | head -1 > "$SLOW_OUT"; exit "\${PIPESTATUS[0]}"`, history())
    expect(r.out.split("\n").filter((l) => l !== "")).toHaveLength(1)
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
  }, 60_000)

  it("exit codes stay those of docs/cli.md through a pipe: 0, 1 and 2", async () => {
    const help = await piped(["--help"])
    expect(help.code).toBe(0)
    expect(help.out).toContain("history")
    const noStats = await piped(["stats", "--data-dir", dataDir])
    expect(noStats.code).toBe(1)
    expect(noStats.stderr).toContain("no stats")
    const usage = await piped(["history", "--no-such-flag", "--data-dir", dataDir])
    expect(usage.code).toBe(2)
  }, 60_000)
})

/** A node on loopback on the seeded data dir; it hears nobody. */
const nodeOn = async (): Promise<NodeSpec> => {
  const [udp, tcp, other] = [await freePort(), await freePort(), await freePort()]
  return { name: "alice", dataDir, bind: LOOPBACK, udpPort: udp, tcpPort: tcp, targets: [`${LOOPBACK}:${other}`] }
}

/** The one stdout line of the console's `history --json`: the array. */
const historyArray = (out: string): Array<HistoryRow> => {
  const line = out.split("\n").find((l) => l.startsWith("["))
  expect(line, `no array line in ${out.length} characters of output`).toBeDefined()
  return parseWhole(line!)
}

describe("the console of start", () => {
  it("history typed at the console, then quit, piped to a slow reader: the whole array, exit 0", async () => {
    const node = await nodeOn()
    const { options, outFile } = shell(PIPED)
    const proc = spawnCli(["start", "--json", ...nodeOptions(node)], { ...options, stdin: "pipe" })
    proc.input("history", "quit")
    const { code } = await Promise.race([proc.exited, sleep(60_000).then(() => proc.stop())])
    expect(code, proc.stderr.join("\n")).toBe(0)
    checkHistory(historyArray(fs.readFileSync(outFile, "utf8")))
  }, 70_000)

  it("SIGTERM while the console's output waits for its reader: the whole output, then exit 143", async () => {
    const node = await nodeOn()
    const proc = spawnCli(["start", "--json", ...nodeOptions(node)], { stdin: "pipe" })
    const stdout = proc.child.stdout!
    // Not read at first: once the pipe and this side's buffer are full, the rest waits in the CLI.
    stdout.pause()
    await waitFor("the node to start", () => proc.stderr.length > 0 ? true : undefined, 10_000)
    proc.input("history")
    await sleep(1_500) // the console has written the whole array by now; most of it waits
    proc.child.kill("SIGTERM")
    await sleep(500) // a CLI that does not wait for its output has exited by now
    stdout.resume()
    const { code, signal } = await Promise.race([proc.exited, sleep(30_000).then(() => proc.stop("SIGKILL"))])
    await new Promise<void>((resolve) => stdout.readableEnded ? resolve() : stdout.once("end", () => resolve()))
    expect({ code, signal }, proc.stderr.join("\n")).toEqual({ code: 143, signal: null })
    checkHistory(historyArray(proc.stdout.join("\n")))
  }, 60_000)
})
