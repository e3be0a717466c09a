/**
 * Runs the built CLI (`node bin/p2pchat.js ...`) from tests: long-running nodes whose
 * output lines are collected and awaited, one-shot commands, temp data dirs, free
 * loopback ports, and cleanup of everything started (SIGTERM, then SIGKILL after 2 s);
 * the options that make a command act as a given node on loopback, a pair of such nodes
 * (alice and bob) that target each other, and what `history --json` and `--json` events
 * look like.
 *
 * Tests that touch the network must give every node `--bind 127.0.0.x` and loopback
 * targets only (or run it in a network namespace they created).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, beforeAll } from "vitest"

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
export const BIN = path.join(REPO_ROOT, "bin", "p2pchat.js")
export const BUNDLE = path.join(REPO_ROOT, "dist", "p2pchat.js")
export const LOOPBACK = "127.0.0.1"

const KILL_GRACE_MS = 2_000

// ---------------------------------------------------------------------------------------
// Build

const newestMtime = (dir: string): number => {
  let newest = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs)
  }
  return newest
}

const bundleIsStale = () =>
  !fs.existsSync(BUNDLE) ||
  fs.statSync(BUNDLE).mtimeMs < Math.max(newestMtime(path.join(REPO_ROOT, "src")), fs.statSync(path.join(REPO_ROOT, "package.json")).mtimeMs)

/**
 * Runs `npm run build` when dist/p2pchat.js is missing or older than src. Test files run
 * in parallel workers, so a lock dir keeps one build at a time (a half-written bundle
 * must never be started); a lock older than 60 s is left over from a crash.
 */
export const ensureBuilt = async (): Promise<void> => {
  const lock = path.join(REPO_ROOT, "dist", ".build-lock")
  fs.mkdirSync(path.dirname(lock), { recursive: true })
  const deadline = Date.now() + 90_000
  for (;;) {
    try {
      fs.mkdirSync(lock)
      break
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
      const age = Date.now() - (fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now())
      if (age > 60_000) fs.rmSync(lock, { recursive: true, force: true })
      if (Date.now() > deadline) throw new Error(`waited too long for ${lock}`)
      await sleep(100)
    }
  }
  try {
    if (!bundleIsStale()) return
    const r = spawnSync("npm", ["run", "build", "--silent"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 })
    if (r.status !== 0) throw new Error(`npm run build failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`)
  } finally {
    fs.rmSync(lock, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------
// Small utilities

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const tempDirs: Array<string> = []

/** A fresh temp dir, removed by `cleanup()`. */
export const tempDir = (prefix = "p2pchat-test-"): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

/** Polls `probe` until it returns something other than undefined, or fails after `timeoutMs`. */
export const waitFor = async <A>(
  what: string,
  probe: () => A | undefined | Promise<A | undefined>,
  timeoutMs: number,
  intervalMs = 50
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(intervalMs)
  }
}

/** Parses a line as JSON, or undefined when it is not JSON. */
export const parseJsonLine = (line: string): any => {
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------
// Processes

export interface SpawnOptions {
  /** Extra environment; P2PCHAT_* variables of the test runner are removed first. */
  readonly env?: Record<string, string>
  /** The program and its leading arguments; default `node bin/p2pchat.js`. */
  readonly command?: ReadonlyArray<string>
  readonly stdin?: "pipe" | "ignore"
}

export interface CliProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** When it was spawned (Date.now()). */
  readonly startedAt: number
  /** Complete stdout lines so far, and when each arrived. */
  readonly stdout: Array<string>
  readonly stdoutAt: Array<number>
  readonly stderr: Array<string>
  /** stdout lines that are JSON, parsed. */
  readonly json: () => Array<any>
  /** Resolves with the first line (from index `from` on) that matches, or rejects after `timeoutMs`. */
  readonly waitForLine: (
    match: (line: string) => boolean,
    options?: { readonly timeoutMs?: number; readonly stream?: "stdout" | "stderr"; readonly from?: number }
  ) => Promise<{ readonly line: string; readonly index: number; readonly at: number }>
  /** Resolves with the first JSON stdout object that matches. */
  readonly waitForJson: (match: (value: any) => boolean, timeoutMs?: number) => Promise<{ readonly value: any; readonly at: number }>
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  readonly running: () => boolean
  /**
   * Writes each line, followed by a newline, to the process's standard input (spawned with
   * `stdin: "pipe"`), as a user typing at the console would.
   */
  readonly input: (...lines: ReadonlyArray<string>) => void
  /** SIGTERM (or the given signal), then SIGKILL after 2 s; resolves once it exited. */
  readonly stop: (signal?: NodeJS.Signals) => Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

const live = new Set<CliProcess>()

const cleanEnv = (extra: Record<string, string> | undefined): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("P2PCHAT_")) env[k] = v
  return { ...env, ...extra }
}

/** Starts `node bin/p2pchat.js ...args` in the repo root; stopped by `cleanup()`. */
export const spawnCli = (args: ReadonlyArray<string>, options: SpawnOptions = {}): CliProcess => {
  const [cmd, ...pre] = options.command ?? [process.execPath, BIN]
  const child = spawn(cmd!, [...pre, ...args], {
    cwd: REPO_ROOT,
    env: cleanEnv(options.env),
    stdio: [options.stdin ?? "ignore", "pipe", "pipe"]
  })
  // A node that exits while the test still types must not crash the runner with EPIPE.
  child.stdin?.on("error", () => {})
  const startedAt = Date.now()
  const stdout: Array<string> = []
  const stdoutAt: Array<number> = []
  const stderr: Array<string> = []
  const waiters = new Set<() => void>()
  const notify = () => {
    for (const w of [...waiters]) w()
  }
  const collect = (stream: NodeJS.ReadableStream, into: Array<string>, times?: Array<number>) => {
    let partial = ""
    stream.setEncoding("utf8")
    stream.on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n")
      partial = parts.pop()!
      for (const line of parts) {
        into.push(line)
        times?.push(Date.now())
      }
      if (parts.length > 0) notify()
    })
    stream.on("end", () => {
      if (partial !== "") {
        into.push(partial)
        times?.push(Date.now())
        partial = ""
      }
      notify()
    })
  }
  collect(child.stdout!, stdout, stdoutAt)
  collect(child.stderr!, stderr)

  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("exit", (code, signal) => {
      exitInfo = { code, signal }
      resolve(exitInfo)
      notify()
    })
    child.on("error", () => {
      exitInfo = { code: null, signal: null }
      resolve(exitInfo)
      notify()
    })
  })

  const waitForLine: CliProcess["waitForLine"] = (match, opts = {}) => {
    const lines = opts.stream === "stderr" ? stderr : stdout
    const timeoutMs = opts.timeoutMs ?? 5_000
    return new Promise((resolve, reject) => {
      let next = opts.from ?? 0
      const check = () => {
        for (; next < lines.length; next++) {
          if (match(lines[next]!)) {
            done()
            resolve({ line: lines[next]!, index: next, at: opts.stream === "stderr" ? Date.now() : stdoutAt[next]! })
            return
          }
        }
        if (exitInfo !== undefined) {
          done()
          reject(new Error(`process exited (${exitInfo.code ?? exitInfo.signal}) before a matching line appeared\n` + describe()))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`no matching ${opts.stream ?? "stdout"} line within ${timeoutMs} ms\n` + describe()))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  }

  const describe = () =>
    `command: ${[cmd, ...pre, ...args].join(" ")}\nstdout:\n${stdout.join("\n")}\nstderr:\n${stderr.join("\n")}`

  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (exitInfo === undefined) {
      child.kill(signal)
      const timer = setTimeout(() => child.kill("SIGKILL"), KILL_GRACE_MS)
      await exited
      clearTimeout(timer)
    }
    live.delete(proc)
    return exited
  }

  const proc: CliProcess = {
    child,
    pid: child.pid ?? -1,
    startedAt,
    stdout,
    stdoutAt,
    stderr,
    json: () => stdout.map(parseJsonLine).filter((v) => v !== undefined),
    waitForLine,
    waitForJson: async (match, timeoutMs = 5_000) => {
      const r = await waitForLine((line) => {
        const v = parseJsonLine(line)
        return v !== undefined && match(v)
      }, { timeoutMs })
      return { value: JSON.parse(r.line), at: r.at }
    },
    exited,
    running: () => exitInfo === undefined,
    input: (...lines) => {
      const stdin = child.stdin
      if (stdin === null) throw new Error("input: the process was not spawned with stdin: \"pipe\"")
      if (exitInfo !== undefined || stdin.destroyed) throw new Error(`input: the process has exited\n${describe()}`)
      stdin.write(lines.map((l) => `${l}\n`).join(""))
    },
    stop
  }
  live.add(proc)
  return proc
}

export interface RunResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a one-shot command to completion (killed after `timeoutMs`). */
export const runCli = async (
  args: ReadonlyArray<string>,
  options: SpawnOptions & { readonly timeoutMs?: number } = {}
): Promise<RunResult> => {
  const proc = spawnCli(args, options)
  // 'exit' may come before the last of the output has been read: 'close' comes after the
  // process's stdout and stderr ended (waited for at most the kill grace after the exit).
  const outputRead = new Promise<void>((resolve) => {
    proc.child.once("close", () => resolve())
    proc.child.once("error", () => resolve())
  })
  const timer = setTimeout(() => void proc.stop(), options.timeoutMs ?? 10_000)
  const { code, signal } = await proc.exited
  clearTimeout(timer)
  await Promise.race([outputRead, sleep(KILL_GRACE_MS)])
  live.delete(proc)
  return { code, signal, stdout: proc.stdout.join("\n"), stderr: proc.stderr.join("\n") }
}

/** Stops every process started here and removes every temp dir; call in afterEach/afterAll. */
export const cleanup = async (): Promise<void> => {
  await Promise.all([...live].map((p) => p.stop()))
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}

/**
 * The hooks of a test file that runs the built CLI: build it first (`ensureBuilt`), and
 * `cleanup()` after each test, or only after the file when its tests share their nodes.
 */
export const useBuiltCli = (options: { readonly cleanupAfterEach: boolean }): void => {
  beforeAll(ensureBuilt, 120_000)
  if (options.cleanupAfterEach) afterEach(cleanup)
  afterAll(cleanup)
}

// ---------------------------------------------------------------------------------------
// Ports

const udpPortFree = (port: number, host: string) =>
  new Promise<number | undefined>((resolve) => {
    const socket = dgram.createSocket("udp4")
    socket.once("error", () => {
      socket.close()
      resolve(undefined)
    })
    socket.bind(port, host, () => {
      const bound = socket.address().port
      socket.close(() => resolve(bound))
    })
  })

const tcpPortFree = (port: number, host: string) =>
  new Promise<number | undefined>((resolve) => {
    const server = net.createServer()
    server.once("error", () => resolve(undefined))
    server.listen(port, host, () => {
      const bound = (server.address() as net.AddressInfo).port
      server.close(() => resolve(bound))
    })
  })

const handedOut = new Set<number>()

/**
 * A port that is free for both UDP and TCP on `host` (loopback): the OS picks a UDP port
 * (bind 0), the TCP port of the same number is tried, both are closed again. Never the
 * same port twice in one process.
 */
export const freePort = async (host = "127.0.0.1"): Promise<number> => {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await udpPortFree(0, host)
    if (port === undefined || handedOut.has(port)) continue
    if ((await tcpPortFree(port, host)) === undefined) continue
    handedOut.add(port)
    return port
  }
  throw new Error("no free port found in 50 attempts")
}

// ---------------------------------------------------------------------------------------
// Nodes on loopback

/** Who a node is and where it runs: what its commands need. */
export interface NodeSpec {
  readonly name: string
  readonly dataDir: string
  /** `--bind`: 127.0.0.1 unless a test moves the node. */
  readonly bind: string
  readonly udpPort: number
  readonly tcpPort: number
  /** `--target HOST:PORT` each: where it announces. */
  readonly targets: ReadonlyArray<string>
}

/** The options that make a command act as `n` (every command accepts every option). */
export const nodeOptions = (n: NodeSpec): Array<string> => [
  "--name", n.name,
  "--data-dir", n.dataDir,
  "--bind", n.bind,
  "--udp-port", String(n.udpPort),
  "--tcp-port", String(n.tcpPort),
  ...n.targets.flatMap((t) => ["--target", t])
]

/**
 * Alice and bob on 127.0.0.1, each with a fresh temp data dir (`<dirPrefix>alice-…`) and
 * free UDP and TCP ports, each announcing to the other's UDP port.
 */
export const nodePair = async (dirPrefix: string): Promise<{ readonly alice: NodeSpec; readonly bob: NodeSpec }> => {
  const [udpA, udpB, tcpA, tcpB] = [await freePort(), await freePort(), await freePort(), await freePort()]
  const alice: NodeSpec = {
    name: "alice", dataDir: tempDir(`${dirPrefix}alice-`), bind: LOOPBACK, udpPort: udpA, tcpPort: tcpA,
    targets: [`${LOOPBACK}:${udpB}`]
  }
  const bob: NodeSpec = {
    name: "bob", dataDir: tempDir(`${dirPrefix}bob-`), bind: LOOPBACK, udpPort: udpB, tcpPort: tcpB,
    targets: [`${LOOPBACK}:${udpA}`]
  }
  return { alice, bob }
}

/** Matches the `--json` event that shows `username` with `status` (online, away, left, expired). */
export const isPeer = (username: string, status: string) => (e: any) =>
  e.event === "peer" && e.username === username && e.status === status

export type Mode = "plain" | "classic-3des" | "noise"

/** A row of `history --json`. */
export interface HistoryRow {
  readonly id: string
  readonly peer: string
  readonly direction: "sent" | "received"
  readonly text: string
  readonly at: string
  readonly mode: Mode
  readonly state: "pending" | "delivered" | "sent" | "received"
}
