-- Drives Neovim's built-in LSP client against `policyctl lsp` (tests/lsp.rs).
-- Environment: POLICYCTL (the binary), FILE (the .scale file to open), QUERIES (JSON:
-- a list of {method, line, character}), RENAME (JSON: {line, character, name}),
-- OUT (where the JSON answer goes). Neovim 0.7 API (Debian 12's package).

local out = {
  diagnostics = {},
  answers = {},
  formatted = vim.NIL,
  renamed = vim.NIL,
  errors = {},
}

local function note(e)
  table.insert(out.errors, tostring(e))
end

local function main()
  vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('FILE')))
  local buf = vim.api.nvim_get_current_buf()
  local client = vim.lsp.start_client({
    name = 'policyctl',
    cmd = { os.getenv('POLICYCTL'), 'lsp' },
    root_dir = vim.fn.fnamemodify(os.getenv('FILE'), ':h'),
  })
  if not client then
    note('the client did not start')
    return
  end
  vim.lsp.buf_attach_client(buf, client)
  if not vim.wait(20000, function() return #vim.diagnostic.get(buf) > 0 end, 20) then
    note('no diagnostics within 20 s')
  end
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    local code = d.code
    if code == nil and d.user_data and d.user_data.lsp then
      code = d.user_data.lsp.code
    end
    table.insert(out.diagnostics, {
      lnum = d.lnum, col = d.col, severity = d.severity,
      message = d.message, source = d.source or vim.NIL, code = code or vim.NIL,
    })
  end

  local uri = vim.uri_from_bufnr(buf)
  for _, q in ipairs(vim.fn.json_decode(os.getenv('QUERIES'))) do
    local params = {
      textDocument = { uri = uri },
      position = { line = q.line, character = q.character },
    }
    local replies = vim.lsp.buf_request_sync(buf, q.method, params, 10000) or {}
    local answer = vim.NIL
    for _, reply in pairs(replies) do
      if reply.error then
        answer = { error = reply.error.message }
      elseif reply.result then
        local r = reply.result
        if q.method == 'textDocument/completion' then
          local items = r.items or r
          local labels = {}
          for _, item in ipairs(items) do
            table.insert(labels, item.label)
          end
          answer = { labels = labels }
        elseif q.method == 'textDocument/hover' then
          answer = { hover = r.contents.value or r.contents }
        else
          answer = { result = r }
        end
      end
    end
    table.insert(out.answers, answer)
  end

  local fmt = vim.lsp.buf_request_sync(buf, 'textDocument/formatting', {
    textDocument = { uri = uri },
    options = { tabSize = 2, insertSpaces = true },
  }, 10000) or {}
  for _, reply in pairs(fmt) do
    if reply.result then
      vim.lsp.util.apply_text_edits(reply.result, buf, 'utf-16')
    end
  end
  out.formatted = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n') .. '\n'

  local rename = vim.fn.json_decode(os.getenv('RENAME'))
  local renamed = vim.lsp.buf_request_sync(buf, 'textDocument/rename', {
    textDocument = { uri = uri },
    position = { line = rename.line, character = rename.character },
    newName = rename.name,
  }, 10000) or {}
  for _, reply in pairs(renamed) do
    if reply.result then
      vim.lsp.util.apply_workspace_edit(reply.result, 'utf-16')
    elseif reply.error then
      note(reply.error.message)
    end
  end
  out.renamed = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n') .. '\n'
  vim.lsp.stop_client(client)
end

local ok, e = pcall(main)
if not ok then
  note(e)
end
local f = io.open(os.getenv('OUT'), 'w')
f:write(vim.fn.json_encode(out))
f:close()
vim.cmd('qa!')
