/**
 * Datagrams into the node's presence port over loopback, paced so that the kernel never
 * drops one (a drop would make the counts unprovable): at most a few in flight, waiting for
 * Discovery to have counted them before sending more.
 */
import * as dgram from "node:dgram"

const LOOPBACK = "127.0.0.1"
/** Largest datagram the fuzz sends (UDP/IPv4 carries at most 65507 bytes). */
export const MAX_UDP_PAYLOAD = 65_000

export interface UdpSender {
  /** The source address and port its datagrams come from. */
  readonly address: string
  readonly port: number
  /** Sends one datagram; resolves once it left (or failed: then false). */
  readonly send: (payload: Uint8Array) => Promise<boolean>
  readonly close: () => Promise<void>
}

/** A sender bound to `address` (a loopback address: all of 127/8 is loopback on Linux). */
export const udpSender = (port: number, address = LOOPBACK): Promise<UdpSender> =>
  new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4")
    socket.once("error", reject)
    socket.bind(0, address, () => {
      socket.off("error", reject)
      socket.on("error", () => {})
      resolve({
        address,
        port: socket.address().port,
        send: (payload) =>
          new Promise((done) => socket.send(payload, port, LOOPBACK, (e) => done(e === null || e === undefined))),
        close: () => new Promise((done) => socket.close(() => done()))
      })
    })
  })

/**
 * `n` senders from 127.0.0.1, 127.0.0.2, ...: presence peers at distinct addresses. Where
 * only 127.0.0.1 can be bound (not Linux), they share it, on distinct ports.
 */
export const udpSenders = async (port: number, n: number): Promise<ReadonlyArray<UdpSender>> => {
  const out: Array<UdpSender> = []
  for (let i = 0; i < n; i++) {
    out.push(await udpSender(port, `127.0.0.${i + 1}`).catch(() => udpSender(port, LOOPBACK)))
  }
  return out
}

/** Polls `cond` every millisecond or so; resolves false after `ms`. */
export const pollUntil = async (cond: () => boolean, ms: number): Promise<boolean> => {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 1))
  }
  return true
}
