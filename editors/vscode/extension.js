// Starts `policyctl lsp` for .scale files. Everything else (diagnostics, hover,
// completion, formatting, renames, the `simulate` code lens) comes from the server.
const { workspace } = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function activate() {
  const config = workspace.getConfiguration('policyctl');
  const command = config.get('path', 'policyctl');
  const serverOptions = { command, args: ['lsp'], transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [{ scheme: 'file', language: 'scale' }, { scheme: 'untitled', language: 'scale' }],
    initializationOptions: { traces: config.get('traces', []) },
    synchronize: { fileEvents: workspace.createFileSystemWatcher('**/{*.scale,policyctl.ron}') },
  };
  client = new LanguageClient('policyctl', 'policyctl', serverOptions, clientOptions);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
