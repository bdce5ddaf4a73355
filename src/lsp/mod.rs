//! `policyctl lsp`: the language server. It speaks the Language Server Protocol over
//! whatever `Connection` it is given (stdio from the binary, memory in tests), through
//! `lsp-server`; it never prints. Diagnostics are `check`'s, run on the open text
//! together with the files `check` would load beside it and the service configuration
//! `check` would discover. Every request is answered inside `catch_unwind`: a bug in one
//! handler answers that request with an error and the server goes on.

pub mod analysis;
mod keywords;
pub mod text;

use std::collections::{BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::Utc;
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidChangeWatchedFiles, DidCloseTextDocument, DidOpenTextDocument,
    DidSaveTextDocument, Notification as _, PublishDiagnostics, ShowMessage,
};
use lsp_types::request::{
    CodeLensRequest, Completion, DocumentSymbolRequest, ExecuteCommand, Formatting, GotoDefinition,
    HoverRequest, PrepareRenameRequest, RangeFormatting, References, Rename, Request as _,
};
use lsp_types::{
    CodeLens, CodeLensOptions, Command, CompletionOptions, CompletionResponse,
    DiagnosticRelatedInformation, DiagnosticSeverity, DiagnosticTag, DocumentSymbolResponse,
    ExecuteCommandOptions, GotoDefinitionResponse, Hover, HoverContents, HoverProviderCapability,
    InitializeParams, Location, MessageType, NumberOrString, OneOf, PositionEncodingKind,
    PrepareRenameResponse, PublishDiagnosticsParams, RenameOptions, ServerCapabilities, ServerInfo,
    ShowMessageParams, TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions,
    TextDocumentSyncSaveOptions, TextEdit, Uri, WorkDoneProgressOptions, WorkspaceEdit,
};
use serde_json::{Value, json};

use crate::check::{self, CONVENTIONAL_SOURCES, Options, Source};
use crate::diagnostic::{Code, Diagnostic, Severity, Span};
use crate::input::{self, caps};
use crate::model;
use crate::serve::{config, policies};
use crate::syntax::{self, ast, format};
use analysis::{Index, Names};
use text::{Encoding, Lines, path_of, uri_of};

/// The command a code lens runs: simulate one policy of a document on a trace.
pub const SIMULATE: &str = "policyctl.simulate";

/// At most this many `.scale` files are checked beside an open document.
const MAX_SIBLINGS: usize = 2_000;

/// Decisions a simulation answers with, at most (the totals count them all).
const MAX_DECISIONS: usize = 10_000;

/// What the embedding program sets; the protocol cannot.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// A command that panics when executed: lets the tests prove that a panic in a
    /// handler answers with an error and leaves the server running. Never set by the
    /// binary.
    #[doc(hidden)]
    pub panic_command: Option<String>,
}

/// An open document.
struct Doc {
    text: String,
    version: i32,
    /// The text's syntax tree, parsed once per version, when a request first needs it.
    tree: std::cell::OnceCell<ast::File>,
    /// Each policy of the text that passed `check`, by name (for schedule hovers and
    /// simulation), as of the last check.
    checked: HashMap<String, model::Policy>,
}

/// The service configuration that `check` would discover for a file.
#[derive(Clone)]
struct Config {
    /// The `policyctl.ron`, when one was found.
    path: Option<PathBuf>,
    options: Options,
    names: Names,
    /// Where the policies loaded together with a file are.
    policy_paths: Vec<PathBuf>,
    /// Problems of the configuration itself, against its own text.
    problems: Vec<Diagnostic>,
    text: String,
}

struct Server {
    connection: Connection,
    settings: Settings,
    encoding: Encoding,
    /// Extra folders to look for traces in (initializationOptions.traces).
    trace_dirs: Vec<PathBuf>,
    root: Option<PathBuf>,
    docs: HashMap<Uri, Doc>,
    /// Documents whose diagnostics are out of date.
    dirty: BTreeSet<Uri>,
    /// `.scale` files on disk, by path: modification time and text.
    disk: HashMap<PathBuf, (SystemTime, String)>,
    /// Configurations by path and modification time.
    configs: HashMap<PathBuf, (SystemTime, Config)>,
    /// Configuration files whose problems were published (to clear them later).
    published_configs: BTreeSet<Uri>,
}

/// Serve one client until it shuts down or goes away.
pub fn run(connection: Connection, settings: Settings) -> Result<(), String> {
    let (id, params) = connection
        .initialize_start()
        .map_err(|e| format!("the client did not initialize: {e}"))?;
    let params: InitializeParams = serde_json::from_value(params)
        .map_err(|e| format!("the client's initialize request is malformed: {e}"))?;
    let utf8 = params
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.as_ref())
        .is_some_and(|encodings| encodings.contains(&PositionEncodingKind::UTF8));
    let encoding = if utf8 {
        Encoding::Utf8
    } else {
        Encoding::Utf16
    };
    #[allow(deprecated)] // root_uri: older clients (Neovim 0.7) send only it.
    let root = params
        .workspace_folders
        .as_ref()
        .and_then(|folders| folders.first())
        .map(|f| f.uri.clone())
        .or(params.root_uri.clone())
        .and_then(|uri| path_of(&uri));
    let trace_dirs = params
        .initialization_options
        .as_ref()
        .and_then(|o| o.get("traces"))
        .and_then(Value::as_array)
        .map(|dirs| {
            dirs.iter()
                .filter_map(Value::as_str)
                .map(|d| match &root {
                    Some(root) => root.join(d),
                    None => PathBuf::from(d),
                })
                .collect()
        })
        .unwrap_or_default();
    let result = json!({
        "capabilities": capabilities(encoding),
        "serverInfo": ServerInfo {
            name: "policyctl".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        },
    });
    connection
        .initialize_finish(id, result)
        .map_err(|e| format!("the client went away while initializing: {e}"))?;
    let mut server = Server {
        connection,
        settings,
        encoding,
        trace_dirs,
        root,
        docs: HashMap::new(),
        dirty: BTreeSet::new(),
        disk: HashMap::new(),
        configs: HashMap::new(),
        published_configs: BTreeSet::new(),
    };
    server.serve()
}

fn capabilities(encoding: Encoding) -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(match encoding {
            Encoding::Utf8 => PositionEncodingKind::UTF8,
            Encoding::Utf16 => PositionEncodingKind::UTF16,
        }),
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                ..TextDocumentSyncOptions::default()
            },
        )),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["\"".into(), "/".into()]),
            ..CompletionOptions::default()
        }),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: WorkDoneProgressOptions::default(),
        })),
        document_formatting_provider: Some(OneOf::Left(true)),
        document_range_formatting_provider: Some(OneOf::Left(true)),
        code_lens_provider: Some(CodeLensOptions {
            resolve_provider: Some(false),
        }),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: vec![SIMULATE.into()],
            work_done_progress_options: WorkDoneProgressOptions::default(),
        }),
        ..ServerCapabilities::default()
    }
}

struct Parsed<'a> {
    doc: &'a Doc,
    lines: Lines<'a>,
    tree: &'a ast::File,
}

/// The `metric` or `let` name a rename starts from.
fn renamable<'a>(index: &'a Index<'_>, offset: usize) -> Result<(usize, &'a str), Failed> {
    index.name_at(offset).ok_or_else(|| {
        Failed(
            ErrorCode::RequestFailed,
            "only a `metric` or `let` name can be renamed".into(),
        )
    })
}

/// A request's failure, answered as a JSON-RPC error.
struct Failed(ErrorCode, String);

type Answer = Result<Value, Failed>;

fn invalid(message: impl Into<String>) -> Failed {
    Failed(ErrorCode::InvalidParams, message.into())
}

fn params<P: serde::de::DeserializeOwned>(value: Value) -> Result<P, Failed> {
    serde_json::from_value(value).map_err(|e| invalid(format!("malformed parameters: {e}")))
}

fn to_value(value: impl serde::Serialize) -> Answer {
    serde_json::to_value(value).map_err(|e| Failed(ErrorCode::InternalError, e.to_string()))
}

impl Server {
    fn serve(&mut self) -> Result<(), String> {
        loop {
            let Ok(message) = self.connection.receiver.recv() else {
                // The client went away without `exit`: nothing more to do.
                return Ok(());
            };
            match message {
                Message::Request(request) => {
                    if self
                        .connection
                        .handle_shutdown(&request)
                        .map_err(|e| e.to_string())?
                    {
                        return Ok(());
                    }
                    let id = request.id.clone();
                    let method = request.method.clone();
                    let answer = catch_unwind(AssertUnwindSafe(|| self.request(request)))
                        .unwrap_or_else(|_| {
                            Err(Failed(
                                ErrorCode::InternalError,
                                format!(
                                    "policyctl lsp failed on `{method}` (a bug; the server goes on)"
                                ),
                            ))
                        });
                    self.respond(id, answer)?;
                }
                Message::Notification(notification) => {
                    // A failed notification has no one to answer; the server goes on.
                    let _ = catch_unwind(AssertUnwindSafe(|| self.notification(notification)));
                }
                Message::Response(_) => {}
            }
            // Diagnostics wait until the client's burst of edits has been read.
            if self.connection.receiver.is_empty() {
                self.publish()?;
            }
        }
    }

    fn respond(&self, id: RequestId, answer: Answer) -> Result<(), String> {
        let response = match answer {
            Ok(value) => Response::new_ok(id, value),
            Err(Failed(code, message)) => Response::new_err(id, code as i32, message),
        };
        self.send(Message::Response(response))
    }

    fn send(&self, message: Message) -> Result<(), String> {
        self.connection
            .sender
            .send(message)
            .map_err(|_| "the client went away".to_string())
    }

    fn notify(&self, method: &str, params: impl serde::Serialize) -> Result<(), String> {
        self.send(Message::Notification(Notification::new(
            method.to_string(),
            params,
        )))
    }

    fn notification(&mut self, n: Notification) {
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(n.params)
                else {
                    return;
                };
                let doc = Doc {
                    text: p.text_document.text,
                    version: p.text_document.version,
                    tree: std::cell::OnceCell::new(),
                    checked: HashMap::new(),
                };
                self.dirty.insert(p.text_document.uri.clone());
                self.docs.insert(p.text_document.uri, doc);
            }
            DidChangeTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(n.params)
                else {
                    return;
                };
                let encoding = self.encoding;
                let Some(doc) = self.docs.get_mut(&p.text_document.uri) else {
                    return;
                };
                for change in p.content_changes {
                    match change.range {
                        None => doc.text = change.text,
                        Some(range) => {
                            let span = Lines::new(&doc.text, encoding).span(range);
                            let span = Span::new(span.start.min(span.end), span.end);
                            doc.text.replace_range(span.start..span.end, &change.text);
                        }
                    }
                }
                doc.version = p.text_document.version;
                doc.tree = std::cell::OnceCell::new();
                self.dirty.insert(p.text_document.uri);
            }
            DidCloseTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(n.params)
                else {
                    return;
                };
                self.docs.remove(&p.text_document.uri);
                self.dirty.remove(&p.text_document.uri);
                let _ = self.notify(
                    PublishDiagnostics::METHOD,
                    PublishDiagnosticsParams::new(p.text_document.uri, Vec::new(), None),
                );
            }
            DidSaveTextDocument::METHOD | DidChangeWatchedFiles::METHOD => {
                // Files beside the open ones, or the configuration, may have changed.
                self.dirty.extend(self.docs.keys().cloned());
            }
            _ => {}
        }
    }

    fn request(&mut self, request: Request) -> Answer {
        let p = request.params;
        match request.method.as_str() {
            HoverRequest::METHOD => {
                let p: lsp_types::HoverParams = params(p)?;
                let at = p.text_document_position_params;
                self.fresh(&at.text_document.uri);
                let Parsed { doc, lines, tree } = self.parsed(&at.text_document.uri)?;
                let reference = self.reference();
                let checked = |name: &str| doc.checked.get(name).cloned();
                let found = analysis::hover(
                    &doc.text,
                    tree,
                    lines.offset(at.position),
                    &checked,
                    Utc::now(),
                    reference.as_deref(),
                );
                to_value(found.map(|(words, span)| Hover {
                    contents: HoverContents::Markup(analysis::markdown(words)),
                    range: Some(lines.range(span)),
                }))
            }
            Completion::METHOD => {
                let p: lsp_types::CompletionParams = params(p)?;
                let at = p.text_document_position;
                self.doc(&at.text_document.uri)?;
                let names = self.config_for(&at.text_document.uri).names;
                let doc = self.doc(&at.text_document.uri)?;
                let offset = Lines::new(&doc.text, self.encoding).offset(at.position);
                let mut items = analysis::complete(&doc.text, offset, &names);
                for item in &mut items {
                    if item.documentation.is_none() {
                        item.documentation = analysis::documentation(&item.label);
                    }
                }
                if self.encoding == Encoding::Utf8 {
                    // Edits were computed in UTF-16 columns; recompute them in bytes.
                    let lines16 = Lines::new(&doc.text, Encoding::Utf16);
                    let lines8 = Lines::new(&doc.text, Encoding::Utf8);
                    for item in &mut items {
                        if let Some(lsp_types::CompletionTextEdit::Edit(edit)) = &mut item.text_edit
                        {
                            edit.range = lines8.range(lines16.span(edit.range));
                        }
                    }
                }
                to_value(CompletionResponse::Array(items))
            }
            GotoDefinition::METHOD => {
                let p: lsp_types::GotoDefinitionParams = params(p)?;
                let at = p.text_document_position_params;
                let Parsed { lines, tree, .. } = self.parsed(&at.text_document.uri)?;
                let index = Index::new(tree);
                let found = index
                    .name_at(lines.offset(at.position))
                    .and_then(|(policy, name)| index.definition(policy, name))
                    .map(|def| {
                        GotoDefinitionResponse::Scalar(Location::new(
                            at.text_document.uri.clone(),
                            lines.range(def.span),
                        ))
                    });
                to_value(found)
            }
            References::METHOD => {
                let p: lsp_types::ReferenceParams = params(p)?;
                let at = p.text_document_position;
                let Parsed { lines, tree, .. } = self.parsed(&at.text_document.uri)?;
                let index = Index::new(tree);
                let found: Option<Vec<Location>> =
                    index
                        .name_at(lines.offset(at.position))
                        .map(|(policy, name)| {
                            index
                                .occurrences(policy, name, p.context.include_declaration)
                                .into_iter()
                                .map(|span| {
                                    Location::new(at.text_document.uri.clone(), lines.range(span))
                                })
                                .collect()
                        });
                to_value(found)
            }
            DocumentSymbolRequest::METHOD => {
                let p: lsp_types::DocumentSymbolParams = params(p)?;
                let Parsed { lines, tree, .. } = self.parsed(&p.text_document.uri)?;
                to_value(DocumentSymbolResponse::Nested(analysis::symbols(
                    tree, &lines,
                )))
            }
            PrepareRenameRequest::METHOD => {
                let p: lsp_types::TextDocumentPositionParams = params(p)?;
                let Parsed { lines, tree, .. } = self.parsed(&p.text_document.uri)?;
                let index = Index::new(tree);
                let offset = lines.offset(p.position);
                let (policy, name) = renamable(&index, offset)?;
                let span = index
                    .occurrences(policy, name, true)
                    .into_iter()
                    .find(|s| s.start <= offset && offset <= s.end)
                    .unwrap_or_default();
                to_value(PrepareRenameResponse::Range(lines.range(span)))
            }
            Rename::METHOD => {
                let p: lsp_types::RenameParams = params(p)?;
                let at = p.text_document_position;
                let Parsed { lines, tree, .. } = self.parsed(&at.text_document.uri)?;
                let index = Index::new(tree);
                let (policy, name) = renamable(&index, lines.offset(at.position))?;
                if let Some(problem) = analysis::rename_problem(&index, policy, name, &p.new_name) {
                    return Err(Failed(ErrorCode::RequestFailed, problem));
                }
                let edits: Vec<TextEdit> = index
                    .occurrences(policy, name, true)
                    .into_iter()
                    .map(|span| TextEdit::new(lines.range(span), p.new_name.clone()))
                    .collect();
                to_value(WorkspaceEdit {
                    changes: Some(HashMap::from([(at.text_document.uri, edits)])),
                    ..WorkspaceEdit::default()
                })
            }
            Formatting::METHOD => {
                let p: lsp_types::DocumentFormattingParams = params(p)?;
                let doc = self.doc(&p.text_document.uri)?;
                let lines = Lines::new(&doc.text, self.encoding);
                // A text with syntax errors is left alone; its diagnostics say why.
                let edits: Option<Vec<TextEdit>> = format::format(&doc.text).ok().map(|out| {
                    analysis::edit_between(&doc.text, &out, &lines)
                        .into_iter()
                        .collect()
                });
                to_value(edits)
            }
            RangeFormatting::METHOD => {
                let p: lsp_types::DocumentRangeFormattingParams = params(p)?;
                let Parsed { doc, lines, tree } = self.parsed(&p.text_document.uri)?;
                to_value(analysis::format_policies(
                    &doc.text,
                    tree,
                    lines.span(p.range),
                    &lines,
                ))
            }
            CodeLensRequest::METHOD => {
                let p: lsp_types::CodeLensParams = params(p)?;
                to_value(self.lenses(&p.text_document.uri)?)
            }
            ExecuteCommand::METHOD => {
                let p: lsp_types::ExecuteCommandParams = params(p)?;
                if Some(&p.command) == self.settings.panic_command.as_ref() {
                    #[allow(clippy::panic)]
                    {
                        panic!("the test's panic command");
                    }
                }
                if p.command != SIMULATE {
                    return Err(invalid(format!("unknown command `{}`", p.command)));
                }
                self.simulate(&p.arguments)
            }
            method => Err(Failed(
                ErrorCode::MethodNotFound,
                format!("policyctl lsp does not answer `{method}`"),
            )),
        }
    }

    /// An open document with its lines and syntax tree.
    fn parsed(&self, uri: &Uri) -> Result<Parsed<'_>, Failed> {
        let doc = self.doc(uri)?;
        Ok(Parsed {
            doc,
            lines: Lines::new(&doc.text, self.encoding),
            tree: doc.tree.get_or_init(|| syntax::parse(&doc.text, 0).0),
        })
    }

    fn doc(&self, uri: &Uri) -> Result<&Doc, Failed> {
        self.docs
            .get(uri)
            .ok_or_else(|| invalid(format!("`{}` is not open", uri.as_str())))
    }

    /// Bring a document's diagnostics and checked policies up to date now.
    fn fresh(&mut self, uri: &Uri) {
        if self.dirty.contains(uri) {
            let _ = self.check(uri);
        }
    }

    /// Where docs/reference.md is, when the workspace has it, to link hovers to.
    fn reference(&self) -> Option<String> {
        let path = self.root.as_ref()?.join("docs/reference.md");
        path.is_file()
            .then(|| uri_of(&path).map(|u| u.as_str().to_string()))
            .flatten()
    }

    // ------------------------------------------------------------ checking

    /// The configuration `check` would use for a document, read again when it changes.
    fn config_for(&mut self, uri: &Uri) -> Config {
        let dir = path_of(uri).and_then(|p| p.parent().map(Path::to_path_buf));
        let found = dir.as_deref().and_then(config::nearest);
        let Some(path) = found else {
            let mut options = Options::at(Utc::now());
            options.conventional_sources = true;
            return Config {
                path: None,
                options,
                names: Names {
                    actuators: Vec::new(),
                    sources: CONVENTIONAL_SOURCES.iter().map(|s| s.to_string()).collect(),
                },
                policy_paths: dir.into_iter().collect(),
                problems: Vec::new(),
                text: String::new(),
            };
        };
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some((when, config)) = self.configs.get(&path)
            && *when == modified
        {
            return config.clone();
        }
        let config = read_config(&path);
        self.configs.insert(path, (modified, config.clone()));
        config
    }

    /// The text of a `.scale` file on disk, read again only when it changed.
    fn disk_text(&mut self, path: &Path) -> Option<String> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
        if let Some((when, text)) = self.disk.get(path)
            && *when == modified
        {
            return Some(text.clone());
        }
        let text = input::read_text(path, caps::POLICY).ok()?;
        self.disk
            .insert(path.to_path_buf(), (modified, text.clone()));
        Some(text)
    }

    /// Check a document with the files loaded beside it; publish for every open one of
    /// them.
    fn check(&mut self, uri: &Uri) -> Result<(), String> {
        let Some(doc) = self.docs.get(uri) else {
            return Ok(());
        };
        let own_text = doc.text.clone();
        let config = self.config_for(uri);
        let own_path = path_of(uri);
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let own_canonical = own_path.as_deref().map(canonical);
        let mut sources = vec![Source {
            path: own_path
                .as_ref()
                .map_or_else(|| uri.as_str().to_string(), |p| p.display().to_string()),
            text: own_text,
        }];
        let mut uris = vec![uri.clone()];
        // Open documents by their file, however the client spelt their URIs.
        let open: HashMap<PathBuf, Uri> = self
            .docs
            .keys()
            .filter_map(|u| path_of(u).map(|p| (canonical(&p), u.clone())))
            .collect();
        if own_path.is_some() {
            let (mut found, _) = policies::scan(&config.policy_paths);
            found.sort();
            found.truncate(MAX_SIBLINGS);
            for path in found {
                if own_canonical.as_deref() == Some(canonical(&path).as_path()) {
                    continue;
                }
                let sibling = match open.get(&canonical(&path)) {
                    Some(uri) => uri.clone(),
                    None => match uri_of(&canonical(&path)) {
                        Some(uri) => uri,
                        None => continue,
                    },
                };
                let text = match self.docs.get(&sibling) {
                    Some(open) => open.text.clone(),
                    None => match self.disk_text(&path) {
                        Some(text) => text,
                        None => continue,
                    },
                };
                sources.push(Source {
                    path: path.display().to_string(),
                    text,
                });
                uris.push(sibling);
            }
        }
        // `check` orders files as they are listed; list them by path, as `check` does.
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by(|a, b| sources[*a].path.cmp(&sources[*b].path));
        let sources: Vec<Source> = order.iter().map(|i| sources[*i].clone()).collect();
        let uris: Vec<Uri> = order.iter().map(|i| uris[*i].clone()).collect();

        let checked = check::check(&sources, &config.options);
        let mut per_file: Vec<Vec<lsp_types::Diagnostic>> = vec![Vec::new(); sources.len()];
        for d in &checked.diagnostics {
            let lines = Lines::new(&sources[d.file].text, self.encoding);
            per_file[d.file].push(convert(d, &lines, &uris, &sources, self.encoding));
        }
        for (file, diagnostics) in per_file.into_iter().enumerate() {
            let Some(open) = self.docs.get_mut(&uris[file]) else {
                continue;
            };
            open.checked = checked
                .policies
                .iter()
                .filter(|p| p.file == file)
                .map(|p| (p.policy.name.clone(), p.policy.clone()))
                .collect();
            let version = Some(open.version);
            self.dirty.remove(&uris[file]);
            self.notify(
                PublishDiagnostics::METHOD,
                PublishDiagnosticsParams::new(uris[file].clone(), diagnostics, version),
            )?;
        }
        // The configuration's own problems, on the configuration.
        if let Some(ron) = config.path.as_deref().and_then(uri_of) {
            let lines = Lines::new(&config.text, self.encoding);
            let problems: Vec<lsp_types::Diagnostic> = config
                .problems
                .iter()
                .map(|d| convert(d, &lines, std::slice::from_ref(&ron), &[], self.encoding))
                .collect();
            if !problems.is_empty() || self.published_configs.contains(&ron) {
                self.notify(
                    PublishDiagnostics::METHOD,
                    PublishDiagnosticsParams::new(ron.clone(), problems.clone(), None),
                )?;
                if problems.is_empty() {
                    self.published_configs.remove(&ron);
                } else {
                    self.published_configs.insert(ron);
                }
            }
        }
        Ok(())
    }

    fn publish(&mut self) -> Result<(), String> {
        while let Some(uri) = self.dirty.iter().next().cloned() {
            self.dirty.remove(&uri);
            self.check(&uri)?;
        }
        Ok(())
    }

    // ------------------------------------------------------------ simulation

    /// A trace for a policy: `NAME.csv` beside the file, in `traces/` beside it, in the
    /// folders of initializationOptions.traces, or in the workspace's `examples/traces/`.
    fn trace_for(&self, file: &Path, policy: &str) -> Option<PathBuf> {
        let name = format!("{}.csv", policy.replace('/', "_"));
        let dir = file.parent()?;
        let mut dirs = vec![dir.to_path_buf(), dir.join("traces")];
        dirs.extend(self.trace_dirs.iter().cloned());
        if let Some(root) = &self.root {
            dirs.push(root.join("traces"));
            dirs.push(root.join("examples/traces"));
        }
        dirs.into_iter()
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    }

    fn lenses(&self, uri: &Uri) -> Result<Vec<CodeLens>, Failed> {
        let Parsed { lines, tree, .. } = self.parsed(uri)?;
        let Some(file) = path_of(uri) else {
            return Ok(Vec::new());
        };
        let index = Index::new(tree);
        Ok(index
            .policies
            .iter()
            .filter_map(|p| {
                let trace = self.trace_for(&file, &p.name.value)?;
                let shown = trace
                    .strip_prefix(file.parent().unwrap_or(Path::new("/")))
                    .ok()
                    .or_else(|| self.root.as_ref().and_then(|r| trace.strip_prefix(r).ok()))
                    .unwrap_or(&trace)
                    .display()
                    .to_string();
                Some(CodeLens {
                    range: lines.range(p.name.span),
                    command: Some(Command {
                        title: format!("▶ simulate on {shown}"),
                        command: SIMULATE.into(),
                        arguments: Some(vec![
                            json!(uri.as_str()),
                            json!(p.name.value),
                            json!(trace.display().to_string()),
                        ]),
                    }),
                    data: None,
                })
            })
            .collect())
    }

    /// `policyctl.simulate [URI, POLICY, TRACE]`: the open text's policy on the trace,
    /// answered with its decisions and totals (and a one-line message to the user).
    fn simulate(&mut self, arguments: &[Value]) -> Answer {
        let arg = |i: usize, what: &str| {
            arguments
                .get(i)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    invalid(format!(
                        "{SIMULATE} takes [uri, policy, trace]: {what} is missing"
                    ))
                })
        };
        let uri: Uri = arg(0, "the document's uri")?
            .parse()
            .map_err(|_| invalid("the first argument is not a URI"))?;
        let policy_name = arg(1, "the policy's name")?;
        let trace_path = PathBuf::from(arg(2, "the trace's path")?);
        if !self.docs.contains_key(&uri) {
            return Err(invalid(format!("`{}` is not open", uri.as_str())));
        }
        let _ = self.check(&uri);
        let doc = self.doc(&uri)?;
        let Some(policy) = doc.checked.get(&policy_name).cloned() else {
            return Err(Failed(
                ErrorCode::RequestFailed,
                format!(
                    "policy `{policy_name}` is not in this file, or has errors (see its diagnostics)"
                ),
            ));
        };
        let trace_text = input::read_text(&trace_path, caps::TRACE).map_err(|e| {
            Failed(
                ErrorCode::RequestFailed,
                format!("cannot read `{}`: {e}", trace_path.display()),
            )
        })?;
        let trace = crate::sim::trace::parse(&trace_text).map_err(|e| {
            Failed(
                ErrorCode::RequestFailed,
                format!("{}: {e}", trace_path.display()),
            )
        })?;
        let mut decisions = Vec::new();
        let (mut ticks, mut ups, mut downs) = (0usize, 0usize, 0usize);
        let (mut lowest, mut highest) = (u32::MAX, 0u32);
        crate::sim::run(&policy, &trace, &crate::sim::Options::default(), |view| {
            ticks += 1;
            let result = view.tick.explanation.result;
            lowest = lowest.min(result);
            highest = highest.max(result);
            let Some(decision) = &view.tick.decision else {
                return;
            };
            if result > view.current {
                ups += 1;
            } else {
                downs += 1;
            }
            if decisions.len() < MAX_DECISIONS {
                decisions.push(json!({
                    "at": view.at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "from": view.current,
                    "to": result,
                    "reason": decision.reason,
                }));
            }
        })
        .map_err(|e| {
            Failed(
                ErrorCode::RequestFailed,
                format!("{}: {e}", trace_path.display()),
            )
        })?;
        let range = if ticks == 0 {
            "-".to_string()
        } else {
            format!("{lowest}..{highest}")
        };
        let summary = format!(
            "{policy_name} on {}: {ticks} ticks, {} decisions ({ups} up, {downs} down), replicas {range}",
            trace_path
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            ups + downs
        );
        let _ = self.notify(
            ShowMessage::METHOD,
            ShowMessageParams {
                typ: MessageType::INFO,
                message: summary.clone(),
            },
        );
        Ok(json!({
            "policy": policy_name,
            "trace": trace_path.display().to_string(),
            "ticks": ticks,
            "up": ups,
            "down": downs,
            "lowest": (ticks > 0).then_some(lowest),
            "highest": (ticks > 0).then_some(highest),
            "summary": summary,
            "decisions": decisions,
            "truncated": ups + downs > decisions.len(),
        }))
    }
}

/// Read a configuration as `check` would, without loading its plugins (that is
/// `check --config`'s job, and too slow for every keystroke).
fn read_config(path: &Path) -> Config {
    let fallback = |problems: Vec<Diagnostic>, text: String| Config {
        path: Some(path.to_path_buf()),
        // As `check --config` with a broken configuration: nothing is known.
        options: Options::at(Utc::now()),
        names: Names::default(),
        policy_paths: path.parent().map(Path::to_path_buf).into_iter().collect(),
        problems,
        text,
    };
    let (text, base) = match config::read(path) {
        Ok(read) => read,
        Err(e) => {
            let d = Diagnostic::new(Code::ConfigInvalid, 0, Span::default(), e);
            return fallback(vec![d], String::new());
        }
    };
    let (loaded, problems) = match config::load(text.clone(), base) {
        Ok(loaded) => loaded,
        Err(d) => return fallback(vec![d], text),
    };
    let options = policies::options(&loaded);
    let known = options.known.clone().unwrap_or_default();
    let names = Names {
        actuators: known.actuators,
        sources: known.sources.into_iter().map(|(name, _)| name).collect(),
    };
    Config {
        path: Some(path.to_path_buf()),
        options,
        names,
        policy_paths: loaded.policy_paths(),
        problems,
        text,
    }
}

/// One of `check`'s diagnostics as the protocol carries it: the message with its help,
/// the primary label's range, and the other labels as related information.
fn convert(
    d: &Diagnostic,
    lines: &Lines<'_>,
    uris: &[Uri],
    sources: &[Source],
    encoding: Encoding,
) -> lsp_types::Diagnostic {
    let mut message = d.message.clone();
    if let Some(label) = d.labels.first().filter(|l| !l.message.is_empty()) {
        message.push_str(&format!(" ({})", label.message));
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let related: Vec<DiagnosticRelatedInformation> = d
        .labels
        .iter()
        .skip(1)
        .filter_map(|label| {
            let file = label.file.unwrap_or(d.file);
            let uri = uris.get(file)?.clone();
            let range = match (label.file, sources.get(file)) {
                (Some(_), Some(other)) => Lines::new(&other.text, encoding).range(label.span),
                _ => lines.range(label.span),
            };
            Some(DiagnosticRelatedInformation {
                location: Location::new(uri, range),
                message: label.message.clone(),
            })
        })
        .collect();
    lsp_types::Diagnostic {
        range: lines.range(d.span()),
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.as_str().to_string())),
        code_description: None,
        source: Some("policyctl".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags: (d.code == Code::UnusedName).then(|| vec![DiagnosticTag::UNNECESSARY]),
        data: None,
    }
}
