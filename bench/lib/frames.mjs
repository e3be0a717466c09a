// Newline-delimited compact JSON on a node:net socket (what p2pchat writes), for the
// baseline and the raw benchmark clients.

/** Calls `onFrame(object)` for every `\n`-terminated JSON line; `onBad(text)` for bad JSON. */
export const onFrames = (socket, onFrame, onBad = () => socket.destroy()) => {
  let buf = ""
  socket.setEncoding("utf8")
  socket.on("data", (chunk) => {
    buf += chunk
    let start = 0
    let i
    while ((i = buf.indexOf("\n", start)) >= 0) {
      const line = buf.slice(start, i)
      start = i + 1
      if (line.length === 0) continue
      let obj
      try {
        obj = JSON.parse(line)
      } catch {
        onBad(line)
        return
      }
      onFrame(obj)
    }
    buf = start === 0 ? buf : buf.slice(start)
  })
}

/** A socket whose frames are read one at a time with `await next()`. */
export const frameReader = (socket) => {
  const queue = []
  const waiting = []
  let ended
  const settle = () => {
    while (waiting.length > 0 && (queue.length > 0 || ended)) {
      const w = waiting.shift()
      if (queue.length > 0) w.resolve(queue.shift())
      else w.reject(ended)
    }
  }
  onFrames(socket, (f) => {
    queue.push(f)
    settle()
  })
  socket.on("close", () => {
    ended ??= new Error("connection closed")
    settle()
  })
  socket.on("error", (e) => {
    ended ??= e
    settle()
  })
  return {
    next: () =>
      new Promise((resolve, reject) => {
        waiting.push({ resolve, reject })
        settle()
      }),
    write: (obj) => socket.write(JSON.stringify(obj) + "\n")
  }
}

/** 1 KiB of text: the message every throughput figure sends. */
export const KIB_TEXT = "p2pchat benchmark message ".repeat(40).slice(0, 1024)
