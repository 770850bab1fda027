// tsc emits the CommonJS build; this writes the ESM entry point beside it: a re-export of that
// build, so `import` and `require` load one and the same module instance and see the same
// exports (no dual-package hazard), with types to match.
import { writeFileSync } from 'node:fs';

const reexport = "export * from './index.js';\n";
writeFileSync('dist/lib/index.mjs', reexport);
writeFileSync('dist/lib/index.d.mts', reexport);
