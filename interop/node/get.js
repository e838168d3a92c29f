'use strict'
// The seed's get.js (rave-level's README), on the directory given as argv[2] (default ./data):
// every 250 ms, print `a= VALUE`.
const { RaveLevel } = require('rave-level')
const dir = process.argv[2] || require('path').join(__dirname, 'data')
const db = new RaveLevel(dir, { valueEncoding: 'json' })
db.on('leader', () => console.log('leader'))
const timer = setInterval(function () {
  db.get('a', function (err, value) {
    console.log(err ? 'get error ' + err.code : 'a= ' + value)
  })
}, Number(process.env.GET_INTERVAL_MS || 250))
process.on('SIGTERM', () => { clearInterval(timer); db.close(() => process.exit(0)) })
