// Child processes for the benchmarks: every child is tracked and killed when the harness
// ends (normally, on error or on a signal); ports the OS chose are read from /proc.
import { spawn } from "node:child_process"
import * as fs from "node:fs"

const children = new Set()

/** Spawns a tracked child. stdout lines go to `onLine` when given (stdout is always drained). */
export const spawnTracked = (cmd, args, { onLine, onErrLine, env, stdin = "ignore", cwd } = {}) => {
  const child = spawn(cmd, args, { stdio: [stdin, "pipe", "pipe"], env: { ...process.env, ...env }, cwd })
  children.add(child)
  child.exited = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      children.delete(child)
      resolve({ code, signal })
    })
  })
  child.stderrText = ""
  lines(child.stdout, onLine ?? (() => {}))
  lines(child.stderr, (l) => {
    if (child.stderrText.length < 20_000) child.stderrText += l + "\n"
    onErrLine?.(l)
  })
  return child
}

export const lines = (stream, onLine) => {
  let buf = ""
  stream.setEncoding("utf8")
  stream.on("data", (chunk) => {
    buf += chunk
    let i
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      onLine(line)
    }
  })
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child is gone. */
export const stop = async (child, graceMs = 3000) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
  await child.exited
  clearTimeout(timer)
}

export const stopAll = () => Promise.all([...children].map((c) => stop(c)))

/** Last resort: never leave a child behind. */
export const killAllNow = () => {
  for (const c of children) {
    try {
      c.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
}
process.on("exit", killAllNow)

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Polls `probe` until it returns a value other than undefined; throws after `timeoutMs`. */
export const waitFor = async (what, probe, timeoutMs, everyMs = 20) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}

const socketInodes = (pid) => {
  const inodes = new Set()
  let fds = []
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`)
  } catch {
    return inodes
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) inodes.add(m[1])
    } catch {
      // closed meanwhile
    }
  }
  return inodes
}

/** Local ports of the process's IPv4 sockets: TCP in LISTEN state, and UDP. */
export const ports = (pid) => {
  const inodes = socketInodes(pid)
  const read = (file, listenOnly) => {
    const out = []
    for (const line of fs.readFileSync(file, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10 || !inodes.has(f[9])) continue
      if (listenOnly && f[3] !== "0A") continue
      out.push(parseInt(f[1].split(":")[1], 16))
    }
    return out
  }
  return { tcp: read("/proc/net/tcp", true), udp: read("/proc/net/udp", false) }
}

/** Waits until the process listens on one TCP port and/or holds one UDP port. */
export const waitForPorts = (child, { tcp = false, udp = false }, timeoutMs = 15_000) =>
  waitFor(`ports of pid ${child.pid}`, () => {
    if (child.exitCode !== null) throw new Error(`process ${child.pid} exited (${child.exitCode}): ${child.stderrText.slice(0, 2000)}`)
    const p = ports(child.pid)
    if ((tcp && p.tcp.length === 0) || (udp && p.udp.length === 0)) return undefined
    return { tcp: p.tcp[0], udp: p.udp[0] }
  }, timeoutMs)

/** Resident set size in MB, from /proc/PID/status. */
export const rssMB = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
  return m ? Number(m[1]) / 1024 : NaN
}

/** Runs a child to completion and parses the last JSON line of its stdout. */
export const runJson = async (cmd, args, { timeoutMs, env } = {}) => {
  let last
  const child = spawnTracked(cmd, args, {
    env,
    onLine: (l) => {
      if (l.startsWith("{")) last = l
    }
  })
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
  const { code, signal } = await child.exited
  clearTimeout(timer)
  if (code !== 0 || last === undefined) {
    const why = signal === "SIGKILL" ? `killed after ${timeoutMs} ms` : `exit ${code ?? signal}`
    throw new Error(`${args.find((a) => a.endsWith(".mjs") || a.endsWith(".js")) ?? cmd}: ${why}: ${child.stderrText.trim().split("\n").slice(-5).join(" | ")}`)
  }
  return JSON.parse(last)
}

