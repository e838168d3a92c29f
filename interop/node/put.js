'use strict'
// The seed's put.js (rave-level's README), on the directory given as argv[2] (default ./data):
// every second, set `a` to this process's number + 1. Logs `put a=N` after each acknowledged put.
const { RaveLevel } = require('rave-level')
const dir = process.argv[2] || require('path').join(__dirname, 'data')
const db = new RaveLevel(dir, { valueEncoding: 'json' })
db.on('leader', () => console.log('leader'))
const n = Math.floor(Math.random() * 100000)
const timer = setInterval(function () {
  db.put('a', n + 1, (err) => console.log(err ? 'put error ' + err.code : 'put a=' + (n + 1)))
}, Number(process.env.PUT_INTERVAL_MS || 1000))
process.on('SIGTERM', () => { clearInterval(timer); db.close(() => process.exit(0)) })
