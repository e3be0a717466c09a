/**
 * A small LAN made of Linux network namespaces, so tests can use real broadcast without
 * touching the machine's own network: one namespace holds a bridge `br0`; each host is a
 * namespace with `eth0` (one end of a veth pair, the other end enslaved to br0 in the
 * bridge namespace) and an address on a private /24. Nothing is created in the root
 * namespace. Needs root and iproute2.
 *
 * Names are `p2pc-br-<pid>-<tag>` and `p2pc-h<N>-<pid>-<tag>`: the pid finds leftovers of
 * a crashed run (its process is gone), the tag keeps two LANs of one process apart.
 */
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { type CliProcess, runCli, type RunResult, spawnCli, type SpawnOptions } from "../support/cli.ts"

export const NETNS_PREFIX = "p2pc-"
const NAME = /^p2pc-(?:br|h\d+)-(\d+)-[0-9a-f]+$/

const ip = (args: ReadonlyArray<string>, check = true): string => {
  const r = spawnSync("ip", args, { encoding: "utf8", timeout: 10_000 })
  if (check && r.status !== 0) throw new Error(`ip ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr || r.error}`)
  return r.stdout ?? ""
}

/** Why namespaces cannot be used here, or undefined when they can. Cheap: run at load time. */
export const netnsUnavailable = (): string | undefined => {
  if (process.platform !== "linux") return "network namespaces need Linux"
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return "network namespaces need root"
  const r = spawnSync("ip", ["netns", "list"], { encoding: "utf8", timeout: 5_000 })
  if (r.error !== undefined) return `iproute2 is missing (ip: ${r.error.message})`
  if (r.status !== 0) return `ip netns does not work here: ${r.stderr.trim()}`
  return undefined
}

const listNetns = (): Array<string> =>
  ip(["netns", "list"], false).split("\n").map((l) => l.trim().split(/\s+/)[0] ?? "").filter((n) => n !== "")

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Deletes namespaces left by earlier runs whose process is gone (never a live run's). */
export const deleteLeftovers = (): Array<string> => {
  const deleted: Array<string> = []
  for (const ns of listNetns()) {
    const m = NAME.exec(ns)
    if (m === null || pidAlive(Number(m[1]))) continue
    killNamespaceProcesses(ns)
    ip(["netns", "del", ns], false)
    deleted.push(ns)
  }
  return deleted
}

const killNamespaceProcesses = (ns: string) => {
  for (const pid of ip(["netns", "pids", ns], false).split("\n").map(Number).filter((n) => n > 0)) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
}

export interface Host {
  /** 1-based. */
  readonly index: number
  readonly ns: string
  /** Its IPv4 address on the LAN. */
  readonly address: string
  /** `argv` prefixed to run inside this host's namespace. */
  readonly command: (argv: ReadonlyArray<string>) => Array<string>
  /** Runs `argv` inside this host to completion (synchronously). */
  readonly exec: (argv: ReadonlyArray<string>, timeoutMs?: number) => { readonly status: number | null; readonly stdout: string; readonly stderr: string }
  /** Starts `argv` inside this host, collected and stopped like spawnCli. */
  readonly spawn: (argv: ReadonlyArray<string>) => CliProcess
  /**
   * `node bin/p2pchat.js ...args` run inside this host, collected like spawnCli; with
   * `stdin: "pipe"` the test types at its console through `input`.
   */
  readonly spawnCli: (args: ReadonlyArray<string>, options?: { readonly stdin?: SpawnOptions["stdin"] }) => CliProcess
  /** A one-shot `node bin/p2pchat.js ...args` inside this host. */
  readonly runCli: (args: ReadonlyArray<string>, timeoutMs?: number) => Promise<RunResult>
}

export interface Lan {
  readonly bridgeNs: string
  readonly subnet: string
  readonly hosts: ReadonlyArray<Host>
  /**
   * Plugs a host's cable out (false) or back in (true): sets the bridge end of its veth pair
   * down or up. The host keeps its address and its eth0 configuration; it just stops
   * hearing and being heard, as when a cable is pulled or the Wi-Fi drops.
   */
  readonly setLink: (host: Host, up: boolean) => void
  /** Kills what runs in the namespaces and deletes them; safe to call twice. */
  readonly teardown: () => void
}

/**
 * Creates a LAN of `hosts` hosts on `subnet` (three octets, e.g. "10.77.7"): host N has
 * address `<subnet>.N/24`. On any failure everything created so far is deleted.
 */
export const createLan = (hosts: number, options: { readonly subnet?: string } = {}): Lan => {
  const subnet = options.subnet ?? "10.77.7"
  const tag = `${process.pid}-${randomBytes(3).toString("hex")}`
  const bridgeNs = `${NETNS_PREFIX}br-${tag}`
  const created: Array<string> = []
  const teardown = () => {
    for (const ns of created.splice(0).reverse()) {
      killNamespaceProcesses(ns)
      ip(["netns", "del", ns], false)
    }
    process.off("exit", teardown)
  }
  // Also when the test process ends without running afterAll.
  process.on("exit", teardown)
  try {
    ip(["netns", "add", bridgeNs])
    created.push(bridgeNs)
    ip(["-n", bridgeNs, "link", "set", "lo", "up"])
    ip(["-n", bridgeNs, "link", "add", "br0", "type", "bridge"])
    ip(["-n", bridgeNs, "link", "set", "br0", "up"])
    const list: Array<Host> = []
    for (let i = 1; i <= hosts; i++) {
      const ns = `${NETNS_PREFIX}h${i}-${tag}`
      ip(["netns", "add", ns])
      created.push(ns)
      const port = `vh${i}`
      // Made inside the bridge namespace, the peer end moved straight into the host.
      ip(["-n", bridgeNs, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
      ip(["-n", bridgeNs, "link", "set", port, "master", "br0"])
      ip(["-n", bridgeNs, "link", "set", port, "up"])
      const address = `${subnet}.${i}`
      ip(["-n", ns, "link", "set", "lo", "up"])
      ip(["-n", ns, "addr", "add", `${address}/24`, "brd", "+", "dev", "eth0"])
      ip(["-n", ns, "link", "set", "eth0", "up"])
      const command = (argv: ReadonlyArray<string>) => ["ip", "netns", "exec", ns, ...argv]
      const cli = [...command([process.execPath])]
      list.push({
        index: i,
        ns,
        address,
        command,
        exec: (argv, timeoutMs = 10_000) => {
          const r = spawnSync("ip", ["netns", "exec", ns, ...argv], { encoding: "utf8", timeout: timeoutMs })
          return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" }
        },
        spawn: (argv) => spawnCli(argv.slice(1), { command: command(argv.slice(0, 1)) }),
        spawnCli: (args, options = {}) =>
          spawnCli(args, { command: [...cli, "bin/p2pchat.js"], ...(options.stdin !== undefined ? { stdin: options.stdin } : {}) }),
        runCli: (args, timeoutMs = 10_000) => runCli(args, { command: [...cli, "bin/p2pchat.js"], timeoutMs })
      })
    }
    const setLink = (host: Host, up: boolean) => {
      ip(["-n", bridgeNs, "link", "set", `vh${host.index}`, up ? "up" : "down"])
    }
    return { bridgeNs, subnet, hosts: list, setLink, teardown }
  } catch (e) {
    teardown()
    throw e
  }
}
