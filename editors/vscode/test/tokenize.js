// Tokenises .scale files with the TextMate grammar, through the library VS Code itself
// uses (vscode-textmate, with the Oniguruma regular expressions of vscode-oniguruma).
// Usage: node test/tokenize.js GRAMMAR FILE...   → JSON on stdout:
// [{ "file": F, "lines": [[{ "text": T, "scopes": [S...] }...]...] }...]
// tests/editors.rs asserts on the result.
const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

async function main() {
  const [grammarPath, ...files] = process.argv.slice(2);
  if (!grammarPath) {
    throw new Error('usage: node test/tokenize.js GRAMMAR FILE...');
  }
  const wasm = fs.readFileSync(path.join(path.dirname(require.resolve('vscode-oniguruma')), 'onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scope) =>
      scope === 'source.scale'
        ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, 'utf8'), grammarPath)
        : null,
  });
  const grammar = await registry.loadGrammar('source.scale');
  const out = files.map((file) => {
    let state = vsctm.INITIAL;
    const lines = fs.readFileSync(file, 'utf8').split(/\r?\n/).map((line) => {
      const result = grammar.tokenizeLine(line, state);
      state = result.ruleStack;
      return result.tokens.map((t) => ({
        text: line.substring(t.startIndex, t.endIndex),
        scopes: t.scopes,
      }));
    });
    return { file, lines };
  });
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
