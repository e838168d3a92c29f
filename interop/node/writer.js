'use strict'
// A Node writer for the mixed tests: puts `<prefix>/<i>` = `i` (utf8) for i = 0.. until SIGTERM
// (or COUNT puts), one at a time, and prints `ack <i>` after each acknowledged put, so that a
// checker knows exactly which writes were acknowledged. `leader` when this process leads.
// Usage: node writer.js DIR PREFIX [COUNT]
const { RaveLevel } = require('rave-level')
const [dir, prefix, count] = process.argv.slice(2)
const db = new RaveLevel(dir)
db.on('leader', () => console.log('leader'))
let stop = false
process.on('SIGTERM', () => { stop = true })
;(async () => {
  const max = count ? Number(count) : Infinity
  for (let i = 0; i < max && !stop; i++) {
    const key = prefix + '/' + String(i).padStart(8, '0')
    await db.put(key, String(i))
    console.log('ack ' + i)
    if (process.env.PACE_MS) await new Promise((resolve) => setTimeout(resolve, Number(process.env.PACE_MS)))
  }
  await db.close()
  console.log('done')
  process.exit(0)
})().catch((e) => { console.log('error ' + (e.code || e.message)); process.exit(1) })
