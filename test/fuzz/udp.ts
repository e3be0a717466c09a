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
  /** Sends one datagram; resolves once it left (or failed: then false). */
  readonly send: (payload: Uint8Array) => Promise<boolean>
  readonly close: () => Promise<void>
}

export const udpSender = (port: number): Promise<UdpSender> =>
  new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4")
    socket.once("error", reject)
    socket.bind(0, LOOPBACK, () => {
      socket.off("error", reject)
      socket.on("error", () => {})
      resolve({
        send: (payload) =>
          new Promise((done) => socket.send(payload, port, LOOPBACK, (e) => done(e === null || e === undefined))),
        close: () => new Promise((done) => socket.close(() => done()))
      })
    })
  })

/** Polls `cond` every millisecond or so; resolves false after `ms`. */
export const pollUntil = async (cond: () => boolean, ms: number): Promise<boolean> => {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 1))
  }
  return true
}
