// `node font-server.cjs DIR`: serves DIR's .woff2 files on 127.0.0.1:8765 while `next build`
// runs (scripts/dify-web-image/Dockerfile, build stage only); google-fonts.cjs names them.
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')

const dir = process.argv[2]
http.createServer((req, res) => {
  const name = path.basename(new URL(req.url, 'http://127.0.0.1').pathname)
  const file = path.join(dir, name)
  if (!name.endsWith('.woff2') || !fs.existsSync(file)) {
    console.error(`font-server: 404 ${req.url}`)
    res.writeHead(404).end()
    return
  }
  console.log(`font-server: ${name}`)
  res.writeHead(200, { 'Content-Type': 'font/woff2' }).end(fs.readFileSync(file))
}).listen(8765, '127.0.0.1', () => console.log(`font-server: serving ${dir} on 127.0.0.1:8765`))
