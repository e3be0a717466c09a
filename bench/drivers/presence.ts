/**
 * presence-cost: the CPU time a node spends on one signed announcement it receives: read from
 * its UDP socket, rate limit, decode, stamp check, signature verification (XEdDSA, each
 * key converted once and cached), registry update. This process is the node's Discovery
 * path as the node builds it (PresenceSocket on 127.0.0.1, Discovery, PeerRegistry, Crypto
 * and Config with the default limits); no Announcer, so that nothing else runs. The peers
 * are a child process (bench/clients/presence-sender.mjs): M keys, each on its own loopback
 * address, so the sending is not counted here.
 *
 * Round 0 (not measured) makes every peer known and every key converted: what a node has
 * after the first 8 s. Then `rounds` rounds of M fresh signed announcements are sent, in
 * chunks the socket buffer holds, and the figure is this process's CPU time (user +
 * system, process.cpuUsage) over them divided by their number. Then those rounds are sent
 * again: stamps not above their key's last, refused before any signature check
 * ("replayed"); that CPU time per datagram is the replay cost (with the warnings Discovery
 * makes: one per address per second). The floor: node:crypto's
 * bare Ed25519 verification (a KeyObject per key, imported once, as Discovery caches them) of
 * messages of the same size, timed the same way in this process, before and after.
 *
 *   node dist/bench/presence.js --data-dir DIR [--peers 1000] [--rounds 8]
 * Prints {"perAnnouncementUs", "perReplayUs", "verifyUs", "announcements", "replays", ...}.
 */
import { Context, Effect, Exit, Layer, Logger, References, Scope } from "effect"
import { fork } from "node:child_process"
import { createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject, sign, verify } from "node:crypto"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import * as Config from "../../src/services/Config.ts"
import * as Crypto from "../../src/services/Crypto.ts"
import * as Discovery from "../../src/services/Discovery.ts"
import * as PeerRegistry from "../../src/services/PeerRegistry.ts"
import * as PresenceSocket from "../../src/services/PresenceSocket.ts"

const { values: opt } = parseArgs({
  options: {
    "data-dir": { type: "string" },
    peers: { type: "string", default: "1000" },
    rounds: { type: "string", default: "8" },
    chunk: { type: "string", default: "250" }
  }
})
const PEERS = Number(opt.peers)
const ROUNDS = Number(opt.rounds)
const CHUNK = Number(opt.chunk)
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const SENDER = path.join(ROOT, "bench", "clients", "presence-sender.mjs")

const cpuUs = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The peers' process, spoken to over its IPC channel one request at a time. */
const startSender = () => {
  const child = fork(SENDER, [], { stdio: ["ignore", "ignore", "inherit", "ipc"] })
  let pending: ((m: any) => void) | undefined
  child.on("message", (m) => {
    const p = pending
    pending = undefined
    p?.(m)
  })
  const ask = (m: unknown): Promise<any> =>
    new Promise((resolve, reject) => {
      pending = (r) => (r?.error !== undefined ? reject(new Error(`presence sender: ${r.error}`)) : resolve(r))
      child.send(m as object)
    })
  return { ask, kill: () => child.kill("SIGKILL") }
}

/**
 * node:crypto's bare Ed25519 verification: `n` verifications over `keys` distinct keys
 * (KeyObjects imported from JWK once), messages shaped like a presence signature's.
 */
const verifyFloorUs = (n: number, keys: number): number => {
  type JwkEncoding = { readonly format: "jwk" }
  const generate = generateKeyPairSync as unknown as (
    type: "ed25519",
    options: { publicKeyEncoding: JwkEncoding; privateKeyEncoding: JwkEncoding }
  ) => { publicKey: JsonWebKey; privateKey: JsonWebKey }
  const items: Array<{ key: KeyObject; message: Buffer; signature: Buffer }> = []
  for (let i = 0; i < keys; i++) {
    const pair = generate("ed25519", { publicKeyEncoding: { format: "jwk" }, privateKeyEncoding: { format: "jwk" } })
    const message = Buffer.from(JSON.stringify(["p2pchat/1 announce", `peer-${i}`, 10_000 + i, "online", pair.publicKey.x, 1_700_000_000_000 + i]))
    const signature = sign(null, message, createPrivateKey({ key: pair.privateKey, format: "jwk" }))
    items.push({ key: createPublicKey({ key: pair.publicKey, format: "jwk" }), message, signature })
  }
  for (let i = 0; i < Math.min(n, 200); i++) verify(null, items[i % keys]!.message, items[i % keys]!.key, items[i % keys]!.signature)
  const t0 = cpuUs()
  let ok = 0
  for (let i = 0; i < n; i++) {
    const it = items[i % keys]!
    if (verify(null, it.message, it.key, it.signature)) ok++
  }
  const us = (cpuUs() - t0) / n
  if (ok !== n) throw new Error(`bare verification failed ${n - ok} of ${n}`)
  return us
}

const main = async () => {
  let logLines = 0
  const config = Config.testConfig({ dataDir: opt["data-dir"]!, name: "presence-bench", logLevel: "warning" })
  const base = Layer.mergeAll(
    Config.layer(config),
    // Warnings are made as a node makes them (Discovery logs a bad sender at most once a
    // second), then counted instead of written.
    Logger.layer([Logger.make(() => void logLines++)]),
    Layer.succeed(References.MinimumLogLevel, "Warn")
  )
  const layer = Discovery.layer.pipe(
    Layer.provideMerge(PeerRegistry.layer),
    Layer.provideMerge(PresenceSocket.layer),
    Layer.provideMerge(Crypto.layer),
    Layer.provideMerge(base)
  )
  const scope = Effect.runSync(Scope.make())
  const ctx = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const discovery = Context.get(ctx, Discovery.Discovery)
  const registry = Context.get(ctx, PeerRegistry.PeerRegistry)
  const socket = Context.get(ctx, PresenceSocket.PresenceSocket)
  const stats = () => Effect.runSync(discovery.stats)
  const handled = () => {
    const s = stats()
    return s.accepted + s.own + s.rejected
  }
  const sender = startSender()
  try {
    const init = await sender.ask({ init: { port: socket.port, peers: PEERS, rounds: ROUNDS + 1 } })
    let expected = 0
    /** Sends a round in chunks; each chunk once the previous one is handled. */
    const sendRound = async (round: number) => {
      for (let from = 0; from < PEERS; from += CHUNK) {
        const to = Math.min(PEERS, from + CHUNK)
        const { sent } = await sender.ask({ send: { round, from, to } })
        expected += sent
        const deadline = Date.now() + 20_000
        while (handled() < expected) {
          if (Date.now() > deadline) {
            throw new Error(`the node handled ${handled()} of ${expected} datagrams in 20 s (socket dropped ${socket.dropped()})`)
          }
          await sleep(1)
        }
      }
    }

    const floorBefore = verifyFloorUs(PEERS * 2, Math.min(PEERS, 1000))
    await sendRound(0) // every peer known, every key converted
    const warm = stats()
    if (warm.accepted !== PEERS) throw new Error(`round 0: ${warm.accepted} of ${PEERS} accepted: ${JSON.stringify(warm.rejectedByReason)}`)

    const t0 = cpuUs()
    const w0 = performance.now()
    for (let r = 1; r <= ROUNDS; r++) await sendRound(r)
    const signedUs = cpuUs() - t0
    const signedMs = performance.now() - w0
    const afterSigned = stats()
    const announcements = afterSigned.accepted - warm.accepted
    if (announcements !== PEERS * ROUNDS || afterSigned.rejected !== warm.rejected) {
      throw new Error(`${announcements} of ${PEERS * ROUNDS} fresh signed announcements accepted: ${JSON.stringify(afterSigned.rejectedByReason)}`)
    }
    const peers = Effect.runSync(registry.list)
    if (peers.length !== PEERS || peers.some((p) => !p.signed)) throw new Error(`registry: ${peers.length} peers, ${peers.filter((p) => p.signed).length} signed`)

    // Copies of every measured round again (older stamps, the last one the same stamp): replays.
    const logsBefore = logLines
    const t1 = cpuUs()
    for (let r = 1; r <= ROUNDS; r++) await sendRound(r)
    const replayUs = cpuUs() - t1
    const afterReplay = stats()
    const replays = afterReplay.rejected - afterSigned.rejected
    if (replays !== ROUNDS * PEERS || (afterReplay.rejectedByReason["replayed"] ?? 0) !== ROUNDS * PEERS) {
      throw new Error(`replays: ${replays} refused of ${ROUNDS * PEERS}: ${JSON.stringify(afterReplay.rejectedByReason)}`)
    }
    const floorAfter = verifyFloorUs(PEERS * 2, Math.min(PEERS, 1000))

    console.log(JSON.stringify({
      perAnnouncementUs: signedUs / announcements,
      perReplayUs: replayUs / replays,
      verifyUs: (floorBefore + floorAfter) / 2,
      verifyBeforeUs: floorBefore,
      verifyAfterUs: floorAfter,
      announcements,
      replays,
      peers: PEERS,
      replayLogLines: logLines - logsBefore,
      announcementsPerSecondWall: announcements / (signedMs / 1000),
      datagramBytes: init.bytes,
      signingMs: init.ms
    }))
  } finally {
    sender.kill()
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(String((e as Error)?.stack ?? e))
    process.exit(1)
  }
)
