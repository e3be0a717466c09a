/**
 * The original's four roles side by side (issue 13, item 10), through the built CLI: on each
 * of two hosts, simulated by two loopback addresses (127.0.0.1 and 127.0.0.2, the same
 * ports on both as on a LAN), `announce`, `discover`, `respond` and `chat` run as separate
 * processes on one data dir, as Announcement.py, PeerDiscover.py, ChatResponder.py and
 * ChatInitiator.py did, each host announcing by unicast (`--target`) to the other.
 *
 * Before, `announce`, `discover` and `respond` all bound the presence port with address
 * reuse, and the kernel gave each sender's unicast datagrams to one of them only (the last
 * bound): a `discover` that started first never saw the other host. Now only `discover`
 * binds it; `announce` sends from a port of its own and `respond` listens on TCP only. The
 * rounds start the roles in different orders (the original's, the reverse, all at once),
 * so that the old failure would show in one of them.
 *
 * And the newcomer answer: a whole node answers an `announce` (which sends from a throwaway
 * port) also on the presence port, where the `discover` beside it listens.
 *
 * Loopback only; every wait is bounded; every process is stopped after each test.
 */
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as net from "node:net"
import { describe, expect, it } from "vitest"
import { type CliProcess, freePort, isPeer, runCli, spawnCli, tempDir, useBuiltCli, waitFor } from "../support/cli.ts"

interface Host {
  readonly ip: string
  readonly name: string
  readonly dataDir: string
}

const udpFree = (port: number, host: string) =>
  new Promise<boolean>((resolve) => {
    const s = dgram.createSocket("udp4")
    s.once("error", () => {
      s.close()
      resolve(false)
    })
    s.bind(port, host, () => s.close(() => resolve(true)))
  })

const tcpFree = (port: number, host: string) =>
  new Promise<boolean>((resolve) => {
    const server = net.createServer()
    server.once("error", () => resolve(false))
    server.listen(port, host, () => server.close(() => resolve(true)))
  })

/** A port free for UDP and TCP on both addresses. */
const portOnBoth = async (): Promise<number> => {
  for (let i = 0; i < 20; i++) {
    const port = await freePort("127.0.0.1")
    if ((await udpFree(port, "127.0.0.2")) && (await tcpFree(port, "127.0.0.2"))) return port
  }
  throw new Error("no port free on both 127.0.0.1 and 127.0.0.2")
}

/**
 * Whether a UDP socket is bound to ip:port, from /proc/net/udp (Linux; undefined elsewhere):
 * read without binding, so that the check cannot take the port from the process it waits for.
 */
const udpBound = (ip: string, port: number): boolean | undefined => {
  let text: string
  try {
    text = fs.readFileSync("/proc/net/udp", "utf8")
  } catch {
    return undefined
  }
  const hexIp = ip.split(".").map((b) => Number(b).toString(16).padStart(2, "0")).reverse().join("").toUpperCase()
  const wanted = `${hexIp}:${port.toString(16).toUpperCase().padStart(4, "0")}`
  return text.split("\n").some((line) => line.trim().split(/\s+/)[1] === wanted)
}

const waitUdpBound = async (ip: string, port: number) => {
  if (udpBound(ip, port) === undefined) return new Promise<void>((r) => setTimeout(r, 1_500))
  await waitFor(`a socket on UDP ${ip}:${port}`, () => (udpBound(ip, port) ? true : undefined), 10_000, 20)
}

useBuiltCli({ cleanupAfterEach: true })

describe("announce, discover, respond and chat side by side on each of two hosts", () => {
  it("discover shows the other host and respond gets what chat and send send, in three rounds with the roles started in different orders", async () => {
    const [udp, tcp] = [await portOnBoth(), await portOnBoth()]
    const hosts: ReadonlyArray<Host> = [
      { ip: "127.0.0.1", name: "alice", dataDir: tempDir("p2pchat-roles-alice-") },
      { ip: "127.0.0.2", name: "bob", dataDir: tempDir("p2pchat-roles-bob-") }
    ]
    const other = (h: Host) => hosts.find((x) => x !== h)!
    const opts = (h: Host) => [
      "--name", h.name, "--data-dir", h.dataDir, "--bind", h.ip, "--udp-port", String(udp), "--tcp-port", String(tcp),
      "--target", `${other(h).ip}:${udp}`, "--announce-every", "1s", "--away-after", "5s", "--json"
    ]

    type Role = "announce" | "discover" | "respond" | "chat"
    /** Starts a role on a host and waits until it is ready, when it says so. */
    const run = async (h: Host, role: Role): Promise<CliProcess> => {
      const p = spawnCli([role, ...opts(h)], { stdin: "pipe" })
      if (role === "announce") await p.waitForLine((l) => l.includes("announcing"), { stream: "stderr", timeoutMs: 10_000 })
      if (role === "respond") await p.waitForLine((l) => l.includes("listening on TCP"), { stream: "stderr", timeoutMs: 10_000 })
      if (role === "discover") await waitUdpBound(h.ip, udp)
      return p
    }
    const orders: ReadonlyArray<readonly [string, ReadonlyArray<ReadonlyArray<Role>>]> = [
      ["the original's order", [["announce"], ["discover"], ["respond"], ["chat"]]],
      ["reversed", [["chat"], ["respond"], ["discover"], ["announce"]]],
      ["all at once", [["announce", "discover", "respond", "chat"]]]
    ]

    /** What a round must show: each side's discover sees the other, and messages reach each respond. */
    const checkRound = async (round: string, p: (h: Host, role: Role) => CliProcess) => {
      const [alice, bob] = hosts as [Host, Host]
      // each discover shows the other host, at its address and TCP port
      for (const h of hosts) {
        const seen = await p(h, "discover").waitForJson(isPeer(other(h).name, "online"), 10_000)
        expect(seen.value, `${round}: ${h.name}'s discover`).toMatchObject({ address: other(h).ip, port: tcp, proto: "p2pchat/1" })
      }
      // and saves it in the data dir, where send and chat read it
      for (const h of hosts) {
        await waitFor(`${round}: ${other(h).name} in ${h.name}'s saved peers`, async () => {
          const r = await runCli(["peers", ...opts(h)])
          return r.code === 0 && (JSON.parse(r.stdout) as Array<{ username: string }>).some((x) => x.username === other(h).name)
            ? true
            : undefined
        }, 5_000, 100)
      }

      // alice's `send` reaches bob's respond, secure (bob's respond has the key bob announces)
      const text1 = `${round}: from alice via send`
      const sent = await runCli(["send", "bob", text1, ...opts(alice)], { timeoutMs: 15_000 })
      expect(sent.code, `${round}: send\n${sent.stdout}\n${sent.stderr}`).toBe(0)
      expect(JSON.parse(sent.stdout)).toMatchObject({ peer: "bob", state: "delivered", mode: "noise" })
      const got1 = await p(bob, "respond").waitForJson((e) => e.event === "message" && e.text === text1, 5_000)
      expect(got1.value).toMatchObject({ from: "alice", mode: "noise" })

      // bob's `chat` reaches alice's respond
      const text2 = `${round}: from bob via chat`
      p(bob, "chat").input(`msg alice ${text2}`)
      const got2 = await p(alice, "respond").waitForJson((e) => e.event === "message" && e.text === text2, 10_000)
      expect(got2.value).toMatchObject({ from: "bob", mode: "noise" })
      await p(bob, "chat").waitForJson((e) => e.event === "delivered" && e.to === "alice", 5_000)
    }

    for (const [round, order] of orders) {
      const procs = new Map<string, CliProcess>()
      for (const group of order) {
        await Promise.all(hosts.flatMap((h) => group.map(async (role) => procs.set(`${h.name} ${role}`, await run(h, role)))))
      }
      const p = (h: Host, role: Role) => procs.get(`${h.name} ${role}`)!

      try {
        await checkRound(round, p)
      } catch (e) {
        const dump = [...procs].map(([what, x]) => `--- ${what}\nstdout:\n${x.stdout.join("\n")}\nstderr:\n${x.stderr.join("\n")}`)
        throw new Error(`${round}: ${(e as Error).message}\n${dump.join("\n")}`)
      }
      for (const [what, proc] of procs) expect(proc.running(), `${round}: ${what} exited\n${proc.stderr.join("\n")}`).toBe(true)
      const exits = await Promise.all([...procs.values()].map((x) => x.stop()))
      for (const e of exits) expect(e.signal, `${round}: a role needed SIGKILL to stop`).not.toBe("SIGKILL")
      for (const h of hosts) expect(fs.readdirSync(h.dataDir).filter((f) => f.endsWith(".lock")), `${round}: locks left`).toEqual([])
    }
  }, 120_000)

  it("a node answers a newcomer `announce` on the presence port too, so the `discover` beside it sees the node within a second, not an interval", async () => {
    const [udp, tcp] = [await portOnBoth(), await portOnBoth()]
    const slow = ["--announce-every", "20s", "--away-after", "30s", "--json"]
    const common = (ip: string, otherIp: string, dataDir: string, name: string) => [
      "--name", name, "--data-dir", dataDir, "--bind", ip, "--udp-port", String(udp), "--tcp-port", String(tcp),
      "--target", `${otherIp}:${udp}`, ...slow
    ]
    const aliceOpts = common("127.0.0.1", "127.0.0.2", tempDir("p2pchat-roles-alice-"), "alice")
    const bobOpts = common("127.0.0.2", "127.0.0.1", tempDir("p2pchat-roles-bob-"), "bob")

    const alice = spawnCli(["start", ...aliceOpts])
    await alice.waitForLine((l) => l.includes("listening on TCP"), { stream: "stderr", timeoutMs: 10_000 })
    // alice's first announcement has gone (to nobody); her next one is 20 s away
    await new Promise((r) => setTimeout(r, 1_000))
    const discover = spawnCli(["discover", ...bobOpts])
    await waitUdpBound("127.0.0.2", udp)
    const announce = spawnCli(["announce", ...bobOpts])
    const since = announce.startedAt

    const heardBob = await alice.waitForJson(isPeer("bob", "online"), 5_000)
    expect(heardBob.value).toMatchObject({ address: "127.0.0.2", port: tcp })
    const seen = await discover.waitForJson(isPeer("alice", "online"), 6_000)
    expect(seen.value).toMatchObject({ address: "127.0.0.1", port: tcp })
    expect(seen.at - since, "the discover beside the announcer waited for alice's next announcement").toBeLessThan(6_000)
    expect(alice.running() && discover.running() && announce.running()).toBe(true)
  }, 40_000)
})
