'use strict'
// Every operation of rave-level 1.0.0 through whatever leads DIR (started before this script):
// three instances, put/get/batch/getMany/not-found/iterators (ranges, reverse, limit,
// values only)/seek/clear/sublevels, and none of them may become leader. Prints `ALL OK`.
// Adapted from the research notes' rave-interop.js (shared/reference/node-interop/).
// Usage: node all-ops.js DIR
const { RaveLevel } = require('rave-level')
const assert = require('assert')
const dir = process.argv[2]
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

;(async () => {
  let leaders = 0
  const dbs = ['a', 'b', 'c'].map(() => {
    const db = new RaveLevel(dir, { valueEncoding: 'json' })
    db.on('leader', () => leaders++)
    return db
  })
  const [a, b, c] = dbs
  await a.put('x', { n: 1 })
  assert.deepStrictEqual(await b.get('x'), { n: 1 })
  await c.batch([{ type: 'put', key: 'y', value: 2 }, { type: 'put', key: 'z', value: [3] }, { type: 'del', key: 'x' }])
  assert.deepStrictEqual(await a.getMany(['x', 'y', 'z']), [undefined, 2, [3]])
  await b.get('x').then(() => assert.fail('expected not found'), (e) => assert.strictEqual(e.code, 'LEVEL_NOT_FOUND'))
  await a.put('empty', '')
  assert.strictEqual(await c.get('empty'), '')
  for (let i = 0; i < 500; i++) await a.put('k' + String(i).padStart(3, '0'), i)
  assert.strictEqual((await b.iterator({ gte: 'k', lt: 'l' }).all()).length, 500)
  assert.deepStrictEqual(await c.keys({ gte: 'k', lt: 'l', reverse: true, limit: 3 }).all(), ['k499', 'k498', 'k497'])
  assert.deepStrictEqual(await c.values({ gte: 'k100', limit: 2 }).all(), [100, 101])
  assert.deepStrictEqual(await c.keys({ gt: 'k497', gte: 'k498', lt: 'l' }).all(), ['k498', 'k499'])
  const it = a.iterator({ gte: 'k' }); it.seek('k250'); assert.deepStrictEqual(await it.next(), ['k250', 250]); await it.close()
  const rit = a.iterator({ lt: 'l', reverse: true }); rit.seek('k2505'); assert.deepStrictEqual(await rit.next(), ['k250', 250]); await rit.close()
  await b.clear({ gte: 'k', lt: 'k1' })
  assert.strictEqual((await a.keys({ gte: 'k', lt: 'l' }).all()).length, 400)
  await b.clear({ gte: 'k', lt: 'l', limit: 10, reverse: true })
  assert.deepStrictEqual(await a.keys({ gte: 'k', lt: 'l', reverse: true, limit: 1 }).all(), ['k489'])
  const subA = a.sublevel('s', { valueEncoding: 'json' }); const subB = b.sublevel('s')
  await subA.put('q', { deep: true })
  assert.strictEqual(await subB.get('q'), '{"deep":true}')
  await sleep(200)
  assert.strictEqual(leaders, 0, 'a Node instance became leader')
  await Promise.all(dbs.map((db) => db.close()))
  console.log('ALL OK')
})().catch((e) => { console.error('FAIL', e); process.exit(1) })
