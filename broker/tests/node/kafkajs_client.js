// A small driver of the Node.js Kafka client kafkajs (pure JavaScript, its own protocol code) for
// the broker integration tests in broker/tests/node_client.rs. kafkajs comes from
// scripts/node-clients.sh (NODE_PATH points into its node_modules).
//
//   produce  --brokers B --topic T --from N --to M [--partition P] [--compression gzip|none]
//            [--idempotent true]   sends the test records N..M (test_record() in
//            common/mod.rs) in batches of 50 to partition P (default 0), acks=all; prints one
//            line per acknowledged record: {"i":idx,"p":partition,"o":offset}
//   consume  --brokers B --topic T --group G --count N   a group member that prints the first N
//            records it gets as JSON lines (the format parse_consumed_lines in common/mod.rs
//            reads), commits exactly the offsets after them, prints "#committed <p> <offset>"
//            as read back through the admin client, and leaves.
//   latest   --brokers B --topic T --through O   reads partition 0 from its start (a group of
//            its own) through offset O, checks that offsets rise, and prints
//            "#read <records> <last offset>" and one "#latest <key> <value|NULL>" per key.
//   txn      --brokers B --topic T --id TID --txns N --per M [--abort-every K] [--partitions P]
//            N transactions of M records (key "k<i>-<j>", value "t<i>-<j>" on partition
//            (i + j) % P) with a transactional producer; every K-th (i % K == K - 1) aborted,
//            the others committed; prints "#committed <i>" or "#aborted <i>" after each (the
//            output of tests/java/SluiceTxnClient.java's produce).
//
// Exit status 0 on success; on any failure the error goes to stderr and the status is 2.
'use strict'

const { Kafka, logLevel, CompressionTypes } = require('kafkajs')

function args(argv) {
  const out = { _: [] }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      if (i + 1 >= argv.length) throw new Error(`option ${argv[i]} needs a value`)
      out[argv[i].slice(2)] = argv[++i]
    } else {
      out._.push(argv[i])
    }
  }
  return out
}

function need(a, name) {
  if (a[name] === undefined) throw new Error(`missing option --${name}`)
  return a[name]
}

// The i-th test record: identical to test_record() in broker/tests/common/mod.rs.
function testRecord(i) {
  const key = i % 5 === 4 ? null : Buffer.from(`key-${i}`)
  let value = null
  if (!(i % 11 === 10 && key !== null)) {
    const len = (i * 97) % 1500 + 1
    value = Buffer.alloc(len)
    for (let j = 0; j < len; j++) value[j] = (i * 131 + j * 7) % 256
  }
  // kafkajs sends an array value as repeated headers, in order.
  const headers = { idx: Buffer.from(String(i)) }
  if (i % 3 !== 0) {
    headers.bin = Buffer.from([0, 255, i % 256])
    headers.dup = [Buffer.from('a'), Buffer.from('b')]
  }
  return { key, value, headers }
}

const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'))

function client(a) {
  return new Kafka({
    clientId: 'sluice-kafkajs-test',
    brokers: need(a, 'brokers').split(','),
    logLevel: logLevel.ERROR,
    retry: { retries: 8 },
  })
}

async function produce(a) {
  const topic = need(a, 'topic')
  const from = Number(need(a, 'from'))
  const to = Number(need(a, 'to'))
  const partition = Number(a.partition || 0)
  const compression = a.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None
  const idempotent = a.idempotent === 'true'
  const producer = client(a).producer({ idempotent, maxInFlightRequests: idempotent ? 1 : undefined })
  await producer.connect()
  try {
    for (let start = from; start < to; start += 50) {
      const end = Math.min(start + 50, to)
      const messages = []
      for (let i = start; i < end; i++) messages.push({ ...testRecord(i), partition })
      const meta = await producer.send({ topic, messages, acks: -1, compression })
      const m = meta.find((r) => r.partition === partition)
      if (!m || m.errorCode !== 0) throw new Error(`send ${start}..${end}: ${JSON.stringify(meta)}`)
      for (let i = start; i < end; i++) {
        const o = Number(m.baseOffset) + (i - start)
        console.log(JSON.stringify({ i, p: partition, o }))
      }
    }
  } finally {
    await producer.disconnect()
  }
}

function headerPairs(headers) {
  const out = []
  for (const [k, v] of Object.entries(headers || {})) {
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, hex(one)])
  }
  return out
}

// Resolves when `done()` is true, polling; rejects after `ms`.
function until(done, ms, what) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now()
    const tick = () => {
      if (done()) return resolve()
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`))
      setTimeout(tick, 20)
    }
    tick()
  })
}

async function consume(a) {
  const topic = need(a, 'topic')
  const groupId = need(a, 'group')
  const count = Number(need(a, 'count'))
  const kafka = client(a)
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  let printed = 0
  const next = {} // partition -> offset after the last printed record
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      if (printed >= count) return
      printed++
      next[partition] = Number(message.offset) + 1
      console.log(
        JSON.stringify({
          p: partition,
          o: Number(message.offset),
          k: hex(message.key),
          v: hex(message.value),
          h: headerPairs(message.headers),
        }),
      )
    },
  })
  await until(() => printed >= count, 60000, `${count} records`)
  await consumer.commitOffsets(
    Object.entries(next).map(([p, o]) => ({ topic, partition: Number(p), offset: String(o) })),
  )
  await consumer.disconnect()
  const admin = kafka.admin()
  await admin.connect()
  for (const t of await admin.fetchOffsets({ groupId, topics: [topic] })) {
    for (const p of t.partitions) console.log(`#committed ${p.partition} ${p.offset}`)
  }
  await admin.disconnect()
}

async function latest(a) {
  const topic = need(a, 'topic')
  const through = Number(need(a, 'through'))
  const consumer = client(a).consumer({ groupId: `${topic}-latest-${process.pid}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  let last = -1
  let records = 0
  let failure = null
  const values = new Map()
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const o = Number(message.offset)
      if (partition !== 0 || o <= last) failure = failure || new Error(`offset ${o} after ${last}`)
      last = o
      records++
      values.set(message.key.toString(), message.value === null ? 'NULL' : message.value.toString())
    },
  })
  await until(() => failure !== null || last >= through, 60000, `offset ${through} (read through ${last})`)
  await consumer.disconnect()
  if (failure) throw failure
  console.log(`#read ${records} ${last}`)
  for (const [k, v] of values) console.log(`#latest ${k} ${v}`)
}

async function txn(a) {
  const topic = need(a, 'topic')
  const txns = Number(need(a, 'txns'))
  const per = Number(need(a, 'per'))
  const abortEvery = Number(a['abort-every'] || 0)
  const partitions = Number(a.partitions || 1)
  const producer = client(a).producer({
    transactionalId: need(a, 'id'),
    idempotent: true,
    maxInFlightRequests: 1,
  })
  await producer.connect()
  try {
    for (let i = 0; i < txns; i++) {
      const t = await producer.transaction()
      for (let j = 0; j < per; j++) {
        await t.send({
          topic,
          acks: -1,
          messages: [{ key: `k${i}-${j}`, value: `t${i}-${j}`, partition: (i + j) % partitions }],
        })
      }
      if (abortEvery > 0 && i % abortEvery === abortEvery - 1) {
        await t.abort()
        console.log(`#aborted ${i}`)
      } else {
        await t.commit()
        console.log(`#committed ${i}`)
      }
    }
  } finally {
    await producer.disconnect()
  }
}

async function main() {
  const a = args(process.argv.slice(2))
  const commands = { produce, consume, latest, txn }
  const run = commands[a._[0]]
  if (!run) throw new Error(`unknown command ${a._[0]} (produce, consume, latest, txn)`)
  await run(a)
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e && e.stack ? e.stack : e)
    process.exit(2)
  },
)
