// NEXT_FONT_GOOGLE_MOCKED_RESPONSES for `next build` (scripts/dify-web-image/Dockerfile, build
// stage only): fonts.googleapis.com is unreachable from the build machine. Maps the css2 URL
// Next requests for app/layout.tsx's Instrument_Serif({ weight: ['400'],
// style: ['normal', 'italic'], subsets: ['latin'] }) to the CSS Google answers a modern
// browser (latin-ext and latin @font-face rules, woff2 only). The font URLs name the local
// server of font-server.cjs, which serves @fontsource/instrument-serif's files (npm), the
// same font files; Turbopack downloads them into .next/static/media.
const server = 'http://127.0.0.1:8765'
const unicodeRange = {
  'latin-ext': 'U+0100-02BA, U+02BD-02C5, U+02C7-02CC, U+02CE-02D7, U+02DD-02FF, U+0304, U+0308, U+0329, U+1D00-1DBF, U+1E00-1E9F, U+1EF2-1EFF, U+2020, U+20A0-20AB, U+20AD-20C0, U+2113, U+2C60-2C7F, U+A720-A7FF',
  'latin': 'U+0000-00FF, U+0131, U+0152-0153, U+02BB-02BC, U+02C6, U+02DA, U+02DC, U+0304, U+0308, U+0329, U+2000-206F, U+20AC, U+2122, U+2191, U+2193, U+2212, U+2215, U+FEFF, U+FFFD',
}
let css = ''
for (const style of ['italic', 'normal']) {
  for (const subset of ['latin-ext', 'latin']) {
    css += `/* ${subset} */
@font-face {
  font-family: 'Instrument Serif';
  font-style: ${style};
  font-weight: 400;
  font-display: swap;
  src: url(${server}/instrument-serif-${subset}-400-${style}.woff2) format('woff2');
  unicode-range: ${unicodeRange[subset]};
}
`
  }
}
module.exports = {
  'https://fonts.googleapis.com/css2?family=Instrument+Serif:ital,wght@0,400;1,400&display=swap': css,
}
