/**
 * Presence end to end: real CLI processes of the built bundle, real UDP sockets, loopback
 * only. Every node gets `--bind 127.0.0.1` (no broadcast on real interfaces) and loopback
 * targets; every datagram the test sends goes to 127.0.0.1.
 */
import { createHash, createPrivateKey, createPublicKey } from "node:crypto"
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { broadcastAddresses } from "../../src/services/PresenceSocket.ts"
import {
  type CliProcess,
  isPeer,
  LOOPBACK,
  nodeOptions,
  nodePair,
  type NodeSpec as CliNodeSpec,
  parseJsonLine,
  runCli,
  sleep,
  spawnCli,
  tempDir,
  useBuiltCli,
  waitFor
} from "../support/cli.ts"

/** A node and the timers it runs with. */
interface NodeSpec extends CliNodeSpec {
  readonly timers: ReadonlyArray<string>
}

const FAST_TIMERS = ["--announce-every", "1s", "--away-after", "2s", "--expire-after", "4s"]
const SLOW_EXPIRY = ["--announce-every", "1s", "--away-after", "10s", "--expire-after", "60s"]

const startNode = (n: NodeSpec): CliProcess => spawnCli(["start", ...nodeOptions(n), ...n.timers, "--json"])

/** Two node specs that target each other, with their own data dirs and ports, and these timers. */
const pair = async (timers: ReadonlyArray<string>): Promise<{ alice: NodeSpec; bob: NodeSpec }> => {
  const { alice, bob } = await nodePair("p2pchat-")
  return { alice: { ...alice, timers }, bob: { ...bob, timers } }
}

const whoami = async (dataDir: string) => {
  // whoami only reads (it makes no key): `chat` with no input makes the identity first, as a node's first start would
  const made = await runCli(["chat", "--data-dir", dataDir])
  expect(made.code, made.stderr).toBe(0)
  const r = await runCli(["whoami", "--json", "--data-dir", dataDir])
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as { fingerprint: string; id: string; username: string | null; dataDir: string }
}

interface PeerRow {
  readonly username: string
  readonly address: string
  readonly port: number
  readonly status: "online" | "away"
  readonly lastSeen: string
  readonly proto: "classic" | "p2pchat/1"
  readonly fingerprint: string | null
}

const peers = async (dataDir: string, timers: ReadonlyArray<string>): Promise<Array<PeerRow>> => {
  const r = await runCli(["peers", "--json", "--data-dir", dataDir, ...timers.slice(2)])
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as Array<PeerRow>
}

/** Receives on 127.0.0.1:port until the first datagram, which it returns. */
const receiveOne = (port: number, timeoutMs: number) =>
  new Promise<Buffer>((resolve, reject) => {
    const socket = dgram.createSocket({ type: "udp4", reuseAddr: true })
    const timer = setTimeout(() => {
      socket.close()
      reject(new Error(`no datagram on ${LOOPBACK}:${port} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on("message", (msg) => {
      clearTimeout(timer)
      socket.close(() => resolve(msg))
    })
    socket.bind(port, LOOPBACK)
  })

/**
 * Sends each payload from `fromIp` (a loopback address) to 127.0.0.1:port, paced so that
 * the receiver's kernel buffer never overflows (UDP would drop silently).
 */
const sendFrom = (fromIp: string, port: number, payloads: ReadonlyArray<Uint8Array | string>) =>
  new Promise<void>((resolve, reject) => {
    if (!fromIp.startsWith("127.")) return reject(new Error("loopback only"))
    const socket = dgram.createSocket("udp4")
    socket.once("error", reject)
    socket.bind(0, fromIp, async () => {
      let sent = 0
      for (const p of payloads) {
        await new Promise<void>((done, fail) => socket.send(p, port, LOOPBACK, (e) => (e ? fail(e) : done())))
        if (++sent % 20 === 0) await sleep(10)
      }
      socket.close(() => resolve())
    })
  })

const peerEvents = (node: CliProcess, username: string) =>
  node.json().filter((e) => e.event === "peer" && e.username === username)

/** The fingerprint of the X25519 key in identity.key, computed independently of src/. */
const fingerprintOfKeyFile = (file: string) => {
  const raw = fs.readFileSync(file)
  expect(raw.length).toBe(32)
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), raw])
  const spki = createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({ format: "der", type: "spki" })
  const publicKey = spki.subarray(spki.length - 32)
  const digest = createHash("sha512").update(publicKey).digest()
  const groups = Array.from({ length: 12 }, (_, i) => String(digest.readUIntBE(i * 5, 5) % 100000).padStart(5, "0"))
  return { fingerprint: groups.join(" "), id: publicKey.toString("base64url") }
}

useBuiltCli({ cleanupAfterEach: true })

describe("presence between two nodes on loopback", () => {
  it("two nodes find each other within one announce interval, then a killed node goes away, then expires (peers and events agree)", async () => {
    const { alice, bob } = await pair(FAST_TIMERS)
    const [aliceId, bobId] = [await whoami(alice.dataDir), await whoami(bob.dataDir)]

    // Alice is up once her first announcement reaches bob's port (announced at once, at start).
    const firstAnnouncement = receiveOne(bob.udpPort, 8_000)
    const a = startNode(alice)
    const first = JSON.parse((await firstAnnouncement).toString("utf8"))
    const { ts, sig, ...unsigned } = first
    expect(unsigned).toEqual({ username: "alice", proto: "p2pchat/1", port: alice.tcpPort, status: "online", id: aliceId.id })
    expect(ts).toBeGreaterThan(Date.now() - 10_000)
    expect(sig).toMatch(/^[A-Za-z0-9_-]{86}$/)

    const b = startNode(bob)
    const [aSeesBob, bSeesAlice] = await Promise.all([
      a.waitForJson(isPeer("bob", "online"), 5_000),
      b.waitForJson(isPeer("alice", "online"), 5_000)
    ])
    const interval = 1_000
    expect(aSeesBob.at - b.startedAt, "alice saw bob too late").toBeLessThan(interval + 500)
    expect(bSeesAlice.at - b.startedAt, "bob saw alice too late").toBeLessThan(interval + 500)
    expect(aSeesBob.value).toMatchObject({ address: LOOPBACK, port: bob.tcpPort, proto: "p2pchat/1", fingerprint: bobId.fingerprint })
    expect(bSeesAlice.value).toMatchObject({ address: LOOPBACK, port: alice.tcpPort, proto: "p2pchat/1", fingerprint: aliceId.fingerprint })

    const listed = await waitFor("bob in alice's peers", async () => {
      const rows = await peers(alice.dataDir, FAST_TIMERS)
      return rows.find((r) => r.username === "bob")
    }, 3_000)
    expect(listed).toMatchObject({ address: LOOPBACK, port: bob.tcpPort, status: "online", proto: "p2pchat/1", fingerprint: bobId.fingerprint })
    expect(Date.parse(listed.lastSeen)).toBeGreaterThan(Date.now() - 3_000)

    // kill -9: no bye, so only the timers can tell.
    b.child.kill("SIGKILL")
    await b.exited
    const killedAt = Date.now()

    const awayAt = await waitFor("bob away in alice's peers", async () => {
      const row = (await peers(alice.dataDir, FAST_TIMERS)).find((r) => r.username === "bob")
      expect(row, "bob vanished before he was shown away").toBeDefined()
      return row!.status === "away" ? Date.now() : undefined
    }, 4_000, 100)
    // Bob's last announcement was at most ~1 s before the kill; away is 2 s after it.
    expect(awayAt - killedAt).toBeGreaterThanOrEqual(800)

    const goneAt = await waitFor("bob gone from alice's peers", async () => {
      const rows = await peers(alice.dataDir, FAST_TIMERS)
      return rows.some((r) => r.username === "bob") ? undefined : Date.now()
    }, 5_000, 100)
    expect(goneAt - killedAt).toBeGreaterThanOrEqual(2_800)

    const expired = await a.waitForJson(isPeer("bob", "expired"), 3_000)
    expect(peerEvents(a, "bob").map((e) => e.status)).toEqual(["online", "away", "expired"])
    const awayEvent = a.stdoutAt[a.stdout.findIndex((l) => isPeer("bob", "away")(parseJsonLine(l) ?? {}))]!
    expect(awayEvent - killedAt).toBeGreaterThanOrEqual(800)
    expect(awayEvent - killedAt).toBeLessThan(2_600)
    expect(expired.at - killedAt).toBeGreaterThanOrEqual(2_800)
    expect(expired.at - killedAt).toBeLessThan(4_600)
    expect(a.running()).toBe(true)
    expect(a.stderr.filter((l) => /\[(warn|error|fatal)/i.test(l))).toEqual([])
  })

  it("a newcomer is answered at once by unicast, long before the next periodic announcement", async () => {
    const timers = ["--announce-every", "10s", "--away-after", "30s", "--expire-after", "60s"]
    const { alice, bob } = await pair(timers)
    const firstAnnouncement = receiveOne(bob.udpPort, 8_000)
    const a = startNode(alice)
    await firstAnnouncement // alice's next periodic announcement is ~10 s away
    const b = startNode(bob)
    const [aSeesBob, bSeesAlice] = await Promise.all([
      a.waitForJson(isPeer("bob", "online"), 5_000),
      b.waitForJson(isPeer("alice", "online"), 5_000)
    ])
    expect(aSeesBob.at - b.startedAt).toBeLessThan(1_500)
    expect(bSeesAlice.at - b.startedAt).toBeLessThan(1_500)
  })

  it("a clean stop (SIGTERM) sends bye, and the other node shows 'left' at once", async () => {
    const { alice, bob } = await pair(SLOW_EXPIRY)
    const a = startNode(alice)
    const b = startNode(bob)
    await Promise.all([
      a.waitForJson(isPeer("bob", "online"), 8_000),
      b.waitForJson(isPeer("alice", "online"), 8_000)
    ])
    await waitFor("bob in alice's peers", async () => (await peers(alice.dataDir, SLOW_EXPIRY)).find((r) => r.username === "bob"), 3_000)

    const stoppedAt = Date.now()
    const exit = b.stop("SIGTERM")
    const left = await a.waitForJson(isPeer("bob", "left"), 2_000)
    expect(left.at - stoppedAt).toBeLessThan(1_000)
    expect(left.value).toMatchObject({ address: LOOPBACK, port: bob.tcpPort, proto: "p2pchat/1" })
    expect((await exit).signal, "bob needed SIGKILL to stop").not.toBe("SIGKILL")
    expect(peerEvents(a, "bob").map((e) => e.status)).toEqual(["online", "left"])

    const goneAt = await waitFor("bob gone from alice's peers", async () => {
      const rows = await peers(alice.dataDir, SLOW_EXPIRY)
      return rows.some((r) => r.username === "bob") ? undefined : Date.now()
    }, 2_000)
    expect(goneAt - stoppedAt).toBeLessThan(2_000)
  })

  it("bad datagrams are reported on stderr and survived; the real peer stays listed unchanged; a classic announcement still works", async () => {
    const { alice, bob } = await pair(SLOW_EXPIRY)
    const a = startNode(alice)
    const b = startNode(bob)
    await a.waitForJson(isPeer("bob", "online"), 8_000)
    await b.waitForJson(isPeer("alice", "online"), 8_000)
    const before = await waitFor("bob in alice's peers", async () =>
      (await peers(alice.dataDir, SLOW_EXPIRY)).find((r) => r.username === "bob"), 3_000)

    const port = alice.udpPort
    const oversize = JSON.stringify({ username: "big", pad: "x".repeat(2_000) })
    // Each kind from its own loopback source, since warnings are limited per sender.
    const kinds: ReadonlyArray<{ from: string; payloads: ReadonlyArray<Uint8Array | string>; reason: RegExp }> = [
      { from: "127.0.0.2", payloads: ["not json at all", "{", "{\"username\": \"bob\""], reason: /not UTF-8 JSON/ },
      { from: "127.0.0.3", payloads: [oversize], reason: /oversized: \d+ bytes, more than 1024/ },
      {
        from: "127.0.0.4",
        payloads: [
          JSON.stringify({ username: "bob", port: "6001" }),
          JSON.stringify({ username: "bob", port: 0 }),
          JSON.stringify({ username: "bob", port: 70_000 }),
          JSON.stringify({ username: "bob", port: 1.5 }),
          JSON.stringify({ username: "bob", status: "busy" }),
          JSON.stringify({ username: "bob", id: "short" }),
          JSON.stringify({ username: 42 })
        ],
        reason: /bad announcement/
      },
      {
        from: "127.0.0.5",
        payloads: ["ev\u0000il", "ev\nil", "ev\u007fil", "ev\u2028il", ""].map((username) => JSON.stringify({ username })),
        reason: /bad announcement/
      },
      {
        from: "127.0.0.6",
        payloads: Array.from({ length: 200 }, (_, i) => {
          const blob = new Uint8Array(1 + ((i * 37) % 1_500))
          for (let j = 0; j < blob.length; j++) blob[j] = Math.floor(Math.random() * 256)
          blob[0] = 0xff // never valid UTF-8, so never an accidental announcement
          return blob
        }),
        reason: /dropped datagram/
      },
      { from: "127.0.0.7", payloads: [Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])], reason: /not UTF-8 JSON/ },
      { from: "127.0.0.8", payloads: ["[1,2]", "42", "null", JSON.stringify({ bye: "bob", id: 7 })], reason: /not a JSON object|bad bye/ }
    ]
    for (const k of kinds) await sendFrom(k.from, port, k.payloads)
    for (const k of kinds) {
      const escaped = k.from.replace(/\./g, "\\.")
      const { line } = await a.waitForLine((l) => new RegExp(`warn.*dropped datagram from ${escaped}:`).test(l), {
        stream: "stderr",
        timeoutMs: 3_000
      })
      expect(line).toMatch(k.reason)
    }

    // Still running, and an announcement interval later bob is listed exactly as before.
    await sleep(1_500)
    expect(a.running()).toBe(true)
    const after = await peers(alice.dataDir, SLOW_EXPIRY)
    expect(after.map((r) => r.username)).toEqual(["bob"])
    const { lastSeen: _l1, ...beforeRest } = before
    const { lastSeen: _l2, ...afterRest } = after[0]!
    expect(afterRest).toEqual(beforeRest)
    expect(Date.parse(after[0]!.lastSeen)).toBeGreaterThan(Date.parse(before.lastSeen))
    expect(a.json().filter((e) => e.event === "peer").map((e) => `${e.username}:${e.status}`)).toEqual(["bob:online"])

    // A valid classic announcement from another loopback address is still heard.
    await sendFrom("127.0.0.9", port, [JSON.stringify({ username: "carol" })])
    const carol = await a.waitForJson(isPeer("carol", "online"), 3_000)
    expect(carol.value).toMatchObject({ address: "127.0.0.9", port: 6001, proto: "classic", fingerprint: null })
    const row = await waitFor("carol in alice's peers", async () =>
      (await peers(alice.dataDir, SLOW_EXPIRY)).find((r) => r.username === "carol"), 2_000)
    expect(row).toMatchObject({ address: "127.0.0.9", port: 6001, status: "online", proto: "classic", fingerprint: null })
    expect(a.running()).toBe(true)
    expect(b.running()).toBe(true)
  })
})

describe("loopback safety", () => {
  it("a node bound to a loopback address computes no broadcast address (so these tests never broadcast)", () => {
    expect(broadcastAddresses("127.0.0.1")).toEqual([])
    expect(broadcastAddresses("127.0.0.9")).toEqual([])
  })
})

describe("CLI basics", () => {
  it("whoami --json prints the fingerprint of the identity key file, which has mode 0600", async () => {
    const dataDir = path.join(tempDir("p2pchat-who-"), "fresh")
    const me = await whoami(dataDir)
    const keyFile = path.join(dataDir, "identity.key")
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600)
    const expected = fingerprintOfKeyFile(keyFile)
    expect(me.fingerprint).toMatch(/^\d{5}( \d{5}){11}$/)
    expect(me.fingerprint).toBe(expected.fingerprint)
    expect(me.id).toBe(expected.id)
    expect(me.dataDir).toBe(dataDir)
    // The key is kept: a second run shows the same identity and leaves the file alone.
    const bytes = fs.readFileSync(keyFile)
    expect((await whoami(dataDir)).fingerprint).toBe(me.fingerprint)
    expect(fs.readFileSync(keyFile).equals(bytes)).toBe(true)
  })

  it("usage errors exit 2 with a message naming the option; --help exits 0", async () => {
    const dataDir = tempDir("p2pchat-usage-")
    // Loopback-bound, in case a bad value were accepted and a node started.
    const safe = ["--name", "u", "--bind", LOOPBACK, "--data-dir", dataDir]
    const badPort = await runCli(["start", ...safe, "--udp-port", "abc"], { timeoutMs: 5_000 })
    expect(badPort.code).toBe(2)
    expect(badPort.stderr).toContain("--udp-port")
    const badDuration = await runCli(["peers", ...safe, "--away-after", "5x"], { timeoutMs: 5_000 })
    expect(badDuration.code).toBe(2)
    expect(badDuration.stderr).toContain("--away-after")
    const badTiming = await runCli(["start", ...safe, "--udp-port", "0", "--tcp-port", "0", "--expire-after", "1s"], { timeoutMs: 5_000 })
    expect(badTiming.code).toBe(2)
    expect(badTiming.stderr).toContain("--expire-after")

    const help = await runCli(["--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/USAGE/)
    expect(help.stdout).toContain("--udp-port")
    const startHelp = await runCli(["start", "--help"])
    expect(startHelp.code).toBe(0)
    expect(startHelp.stdout).toContain("--away-after")
  })

  it("a username with an invisible character (--name or P2PCHAT_NAME) is a usage error naming it as U+XXXX", async () => {
    const safe = ["--bind", LOOPBACK, "--udp-port", "0", "--tcp-port", "0", "--data-dir", tempDir("p2pchat-name-")]
    const flag = await runCli(["start", ...safe, "--name", "bob\u200b"], { timeoutMs: 5_000 })
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain("--name: a username cannot contain U+200B (a format (invisible) character)")
    expect(flag.stderr).toContain("bob\\u{200b}")
    const env = await runCli(["whoami", ...safe], { timeoutMs: 5_000, env: { P2PCHAT_NAME: "\u3164" } })
    expect(env.code).toBe(2)
    expect(env.stderr).toContain("U+3164")
  })
})
