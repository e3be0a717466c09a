/**
 * Clashes on one host, through the built CLI (issue 13, item 8):
 *
 *   - the data dir's lock (src/services/DataDirLock.ts): a second `start` on one data dir,
 *     or a `discover`, `respond` or `announce` beside it, is refused (exit 1) with who holds
 *     it; the first keeps running and its peer never hears it leave; the read-only commands
 *     run beside it; the lock goes with a clean stop, and a lock left by a killed node, or
 *     naming a pid that now belongs to another process, is taken over; of several started at
 *     once, exactly one runs;
 *   - the presence port: a second listener on the same address and port (another node, a
 *     `discover`, or a program bound with SO_REUSEADDR as a classic discovery script may be)
 *     is refused, naming the port and --udp-port, instead of silently taking part of the
 *     first one's datagrams;
 *   - `--bind` to an address that is not on this host: a message that says so.
 *
 * Loopback only: every node gets `--bind 127.0.0.1` and loopback targets, on free ports
 * (the one exception binds 192.0.2.1, an address of no host, and sends nothing). Every wait
 * is bounded; every process is stopped in afterEach.
 */
import { spawnSync } from "node:child_process"
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { describe, expect, it } from "vitest"
import { discoverRole, nodeRole } from "../../src/layers/Node.ts"
import { layer as configLayer, testConfig } from "../../src/services/Config.ts"
import * as PresenceSocket from "../../src/services/PresenceSocket.ts"
import {
  type CliProcess,
  freePort,
  isPeer,
  LOOPBACK,
  nodeOptions,
  nodePair,
  type NodeSpec,
  runCli,
  type RunResult,
  sleep,
  spawnCli,
  tempDir,
  useBuiltCli,
  waitFor
} from "../support/cli.ts"

const LOCK_FILES = ["announce.lock", "discover.lock", "respond.lock"]

const TIMERS = ["--announce-every", "500ms", "--away-after", "3s"]

const startNode = (n: NodeSpec): CliProcess => spawnCli(["start", ...nodeOptions(n), ...TIMERS, "--json"])

/** Waits until the node listens on TCP (it has taken its locks and bound its sockets by then). */
const started = (p: CliProcess) => p.waitForLine((l) => l.includes("listening on TCP"), { stream: "stderr", timeoutMs: 10_000 })

/** A node spec alone on `dataDir` with free ports. */
const lone = async (dataDir: string, name = "alice"): Promise<NodeSpec> => {
  const [udp, tcp, other] = [await freePort(), await freePort(), await freePort()]
  return { name, dataDir, bind: LOOPBACK, udpPort: udp, tcpPort: tcp, targets: [`${LOOPBACK}:${other}`] }
}

/** A refusal: exit 1 by itself (not killed by the timeout), one message on stderr, no stack trace. */
const expectRefused = (what: string, r: RunResult) => {
  expect(r.signal, `${what} did not exit by itself (killed after the timeout)\n${r.stderr}`).toBeNull()
  expect(r.code, `${what}: exit code\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(1)
  expect(r.stderr, `${what}: a stack trace instead of a message`).not.toMatch(/\n\s+at /)
}

/** The refusal of a data dir held by `pid` running `p2pchat role` (as the CLI prints it, after `prefix`). */
const inUseBy = (dataDir: string, pid: number, role: string, prefix = "p2pchat: ") =>
  new RegExp(
    `^${prefix}the data dir ${escape(dataDir)} is in use by p2pchat \\(pid ${pid}, started at \\d{4}-\\d\\d-\\d\\d ` +
      `\\d\\d:\\d\\d:\\d\\d UTC, running \`p2pchat ${role}\`\\); stop it first, or use another --data-dir$`,
    "m"
  )

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

const lockFilesIn = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith(".lock")).sort()

/** A pid that no longer runs: a child that exited and was reaped. */
const deadPid = (): number => {
  const r = spawnSync(process.execPath, ["-e", ""])
  return r.pid!
}

/** Field 22 of /proc/PID/stat: the start time of a process (Linux). */
const procStart = (pid: number): string | undefined => {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return text.slice(text.lastIndexOf(")") + 2).split(" ")[19]
  } catch {
    return undefined
  }
}

const writeLock = (dir: string, holder: Record<string, unknown>) => {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  for (const f of LOCK_FILES) fs.writeFileSync(path.join(dir, f), JSON.stringify(holder) + "\n", { mode: 0o600 })
}

/** Binds a UDP socket as another program would; resolves with it, or with the bind error's code. */
const bindUdp = (port: number, host: string, reuseAddr: boolean) =>
  new Promise<dgram.Socket | string>((resolve) => {
    const s = dgram.createSocket({ type: "udp4", reuseAddr })
    s.once("error", (e: NodeJS.ErrnoException) => {
      s.close()
      resolve(e.code ?? String(e))
    })
    s.bind(port, host, () => resolve(s))
  })

const sockets: Array<dgram.Socket> = []

useBuiltCli({ cleanupAfterEach: true })

describe("one data dir, one node: the lock", () => {
  it("a second `start` on the data dir exits 1 naming the pid that holds it, as do discover, respond and announce; the first keeps running and bob never hears it leave", async () => {
    const { alice, bob } = await nodePair("p2pchat-clash-")
    const a = startNode(alice)
    const b = startNode(bob)
    await Promise.all([a.waitForJson(isPeer("bob", "online"), 10_000), b.waitForJson(isPeer("alice", "online"), 10_000)])

    // the second one has ports of its own: only the data dir is shared
    const second = await lone(alice.dataDir)
    const roles: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
      ["start", ["start", ...nodeOptions(second), ...TIMERS]],
      ["discover", ["discover", ...nodeOptions(second)]],
      ["respond", ["respond", ...nodeOptions(second)]],
      ["announce", ["announce", ...nodeOptions(second), ...TIMERS]]
    ]
    for (const [what, args] of roles) {
      const r = await runCli(args, { timeoutMs: 8_000 })
      expectRefused(`a second ${what}`, r)
      expect(r.stderr, what).toMatch(inUseBy(alice.dataDir, a.pid, "start"))
    }

    // the read-only commands never take it
    for (const cmd of ["peers", "history", "whoami", "stats"]) {
      const r = await runCli([cmd, "--json", ...nodeOptions(alice)], { timeoutMs: 8_000 })
      expect(r.code, `${cmd} beside the node: ${r.stderr}`).toBe(0)
    }

    // nobody said bye for alice: bob still has her online, and she still talks to him
    await sleep(1_000)
    expect(a.running()).toBe(true)
    expect(b.json().filter(isPeer("alice", "left"))).toEqual([])
    const from = b.stdout.length
    const sent = await runCli(["send", "bob", "still the one alice", "--json", ...nodeOptions(alice)], { timeoutMs: 10_000 })
    expect(sent.code, sent.stderr).toBe(0)
    await b.waitForLine((l) => l.includes("still the one alice"), { from, timeoutMs: 5_000 })
    expect(b.json().filter(isPeer("alice", "left"))).toEqual([])
  }, 60_000)

  it("a clean stop removes the lock; a node killed with SIGKILL leaves it, and the next start takes it over", async () => {
    const spec = await lone(tempDir("p2pchat-clash-stale-"))
    const first = startNode(spec)
    await started(first)
    expect(lockFilesIn(spec.dataDir)).toEqual(LOCK_FILES)
    const stopped = await first.stop("SIGTERM")
    expect(stopped.signal, "the node needed SIGKILL to stop").not.toBe("SIGKILL")
    expect(lockFilesIn(spec.dataDir)).toEqual([])

    const killed = startNode(spec)
    await started(killed)
    await killed.stop("SIGKILL")
    expect(lockFilesIn(spec.dataDir), "a SIGKILL runs no finalizer").toEqual(LOCK_FILES)

    const next = startNode(spec)
    await started(next)
    const line = await next.waitForLine((l) => l.includes("took over"), { stream: "stderr", timeoutMs: 2_000 })
    expect(line.line).toContain(`(pid ${killed.pid}), which no longer runs`)
    const holder = JSON.parse(fs.readFileSync(path.join(spec.dataDir, "announce.lock"), "utf8")) as { pid: number }
    expect(holder.pid).toBe(next.pid)
  }, 40_000)

  it.skipIf(!fs.existsSync("/proc/self/stat"))("a lock naming a pid that now belongs to another process (another start time) is taken over; one naming its live holder is not", async () => {
    // a running process that is not p2pchat: as if the system had given a dead node's pid to it
    const other = spawnCli([], { command: [process.execPath, "-e", "setTimeout(() => {}, 60000)"] })
    await waitFor("the other process", () => procStart(other.pid), 5_000)
    const base = { pid: other.pid, host: os.hostname(), role: "start", started: new Date(Date.now() - 60_000).toISOString() }

    const reused = await lone(tempDir("p2pchat-clash-reuse-"))
    writeLock(reused.dataDir, { ...base, procStart: String(Number(procStart(other.pid)) - 1000) })
    const node = startNode(reused)
    await started(node)
    expect(JSON.parse(fs.readFileSync(path.join(reused.dataDir, "discover.lock"), "utf8")).pid).toBe(node.pid)
    await node.stop()

    // the same pid with its own start time: that process holds it
    const held = await lone(tempDir("p2pchat-clash-held-"))
    writeLock(held.dataDir, { ...base, procStart: procStart(other.pid) })
    const r = await runCli(["start", ...nodeOptions(held)], { timeoutMs: 8_000 })
    expectRefused("start on a held data dir", r)
    expect(r.stderr).toMatch(inUseBy(held.dataDir, other.pid, "start"))
    expect(lockFilesIn(held.dataDir), "the holder's lock was left alone").toEqual(LOCK_FILES)

    // held from another host (a data dir on a shared disk): kept, and the message says how to clear it
    const elsewhere = await lone(tempDir("p2pchat-clash-host-"))
    writeLock(elsewhere.dataDir, { ...base, host: "another-host.example" })
    const r2 = await runCli(["discover", ...nodeOptions(elsewhere)], { timeoutMs: 8_000 })
    expectRefused("discover on a data dir held from another host", r2)
    expect(r2.stderr).toContain(`pid ${other.pid} on host another-host.example`)
    expect(r2.stderr).toContain(`if it no longer runs there, remove ${path.join(elsewhere.dataDir, "discover.lock")}`)
  }, 40_000)

  it("three `start` at once on one data dir: exactly one runs, the others exit 1 naming it; again over a stale lock", async () => {
    for (const round of ["fresh", "stale"]) {
      const dataDir = tempDir("p2pchat-clash-race-")
      if (round === "stale") {
        writeLock(dataDir, { pid: deadPid(), host: os.hostname(), role: "start", started: new Date().toISOString() })
      }
      const specs = [await lone(dataDir), await lone(dataDir), await lone(dataDir)]
      const nodes = specs.map(startNode)
      await waitFor(`${round}: two of three refused`, () => (nodes.filter((n) => !n.running()).length >= 2 ? true : undefined), 15_000, 50)
      await sleep(500)
      const running = nodes.filter((n) => n.running())
      expect(running.length, `${round}: running after the race`).toBe(1)
      const winner = running[0]!
      await started(winner)
      for (const n of nodes.filter((n) => n !== winner)) {
        expect((await n.exited).code, n.stderr.join("\n")).toBe(1)
        expect(n.stderr.join("\n")).toMatch(inUseBy(dataDir, winner.pid, "start"))
      }
      for (const f of LOCK_FILES) expect(JSON.parse(fs.readFileSync(path.join(dataDir, f), "utf8")).pid).toBe(winner.pid)
      await winner.stop()
      expect(lockFilesIn(dataDir)).toEqual([])
    }
  }, 60_000)
})

describe("the lock within one process (nodes built in-process, as the tests do)", () => {
  it("a second role on a data dir this process holds is refused; once the first is closed, it is free", async () => {
    const dataDir = tempDir("p2pchat-clash-inproc-")
    const config = testConfig({ name: "alice", dataDir })
    const second = <A, E>(layer: Layer.Layer<A, E>) => Effect.scoped(Effect.flip(Layer.build(layer)))
    const refused = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      yield* Layer.build(nodeRole(config))
      return yield* second(discoverRole(config))
    })))
    expect((refused as { message: string }).message).toMatch(inUseBy(dataDir, process.pid, "start", ""))
    expect(lockFilesIn(dataDir)).toEqual([])
    await Effect.runPromise(Effect.scoped(Layer.build(discoverRole(config))))
    expect(lockFilesIn(dataDir)).toEqual([])
  }, 20_000)
})

describe("one presence port, one listener", () => {
  it("a second node or `discover` on the same address and UDP port is refused, naming the port and --udp-port; the first keeps hearing its peer", async () => {
    const { alice, bob } = await nodePair("p2pchat-clash-udp-")
    const a = startNode(alice)
    await started(a)
    const carol = { ...(await lone(tempDir("p2pchat-clash-carol-"), "carol")), udpPort: alice.udpPort }
    for (const [what, args] of [
      ["start", ["start", ...nodeOptions(carol), ...TIMERS]],
      ["discover", ["discover", ...nodeOptions(carol)]]
    ] as const) {
      const r = await runCli(args, { timeoutMs: 8_000 })
      expectRefused(`a second ${what} on UDP ${alice.udpPort}`, r)
      expect(r.stderr).toContain(`cannot bind UDP ${LOOPBACK}:${alice.udpPort}: the port is already in use`)
      expect(r.stderr).toContain("--udp-port")
    }
    // a program that binds with SO_REUSEADDR (as a classic discovery script may) cannot share it either
    expect(await bindUdp(alice.udpPort, LOOPBACK, true)).toBe("EADDRINUSE")
    // alice got everything bob sent to her port
    const b = startNode(bob)
    await a.waitForJson(isPeer("bob", "online"), 8_000)
    await b.waitForJson(isPeer("alice", "online"), 8_000)
  }, 40_000)

  it("a port held by another program with SO_REUSEADDR: start refuses it instead of sharing", async () => {
    const spec = await lone(tempDir("p2pchat-clash-foreign-"))
    const held = await bindUdp(spec.udpPort, LOOPBACK, true)
    expect(typeof held).not.toBe("string")
    sockets.push(held as dgram.Socket)
    try {
      const r = await runCli(["start", ...nodeOptions(spec)], { timeoutMs: 8_000 })
      expectRefused("start on a port held with SO_REUSEADDR", r)
      expect(r.stderr).toContain(`cannot bind UDP ${LOOPBACK}:${spec.udpPort}: the port is already in use`)
      expect(lockFilesIn(spec.dataDir), "the refused node let its lock go").toEqual([])
    } finally {
      for (const s of sockets.splice(0)) s.close()
    }
  }, 20_000)
})

describe("--bind to an address that is not on this host", () => {
  const NOT_HERE = "192.0.2.1" // TEST-NET-1: documentation only, no host has it

  const bindable = async () => {
    const probe = await bindUdp(0, NOT_HERE, false)
    if (typeof probe === "string") return false
    probe.close()
    return true // this host can bind it (ip_nonlocal_bind): nothing to test
  }

  it("the presence sockets say so, naming the address, the port and --bind (not an empty cause)", async () => {
    if (await bindable()) return
    const dataDir = tempDir("p2pchat-clash-bind-")
    const failure = (layer: typeof PresenceSocket.layer, udpPort: number) =>
      Effect.runPromise(Effect.scoped(Effect.flip(Layer.build(
        layer.pipe(Layer.provide(configLayer(testConfig({ dataDir, bind: NOT_HERE, udpPort }))))
      ))))
    expect((await failure(PresenceSocket.layer, 6000)).message)
      .toBe(`cannot bind UDP ${NOT_HERE}:6000: that address is not on this host (EADDRNOTAVAIL); fix --bind`)
    expect((await failure(PresenceSocket.senderLayer, 6000)).message)
      .toBe(`cannot bind UDP ${NOT_HERE} (a port of its own, to send from): that address is not on this host (EADDRNOTAVAIL); fix --bind`)
  })

  it("start, discover, announce and respond exit 1 with a message that names the address and --bind", async () => {
    if (await bindable()) return
    const spec = { ...(await lone(tempDir("p2pchat-clash-bind-"))), bind: NOT_HERE, targets: [] }
    for (const cmd of ["start", "discover", "announce", "respond"]) {
      const r = await runCli([cmd, ...nodeOptions(spec)], { timeoutMs: 8_000 })
      expectRefused(cmd, r)
      expect(r.stderr, cmd).toMatch(new RegExp(`^p2pchat: cannot (bind|listen on) .*${escape(NOT_HERE)}.*not (on|an address of) this host`, "m"))
      expect(r.stderr, cmd).toContain("--bind")
    }
    expect(lockFilesIn(spec.dataDir)).toEqual([])
  }, 40_000)
})
