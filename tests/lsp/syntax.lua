-- The Vim syntax of editors/vim in Neovim: the syntax group at each asked place.
-- Environment: RTP (editors/vim), FILE, QUERIES (JSON: [[line, column], ...], 1-based,
-- columns in bytes), OUT (JSON: the group names, in order).
vim.opt.runtimepath:prepend(os.getenv('RTP'))
-- Neovim turned filetype detection on before the path changed: again, to read ftdetect/.
vim.cmd('filetype off')
vim.cmd('filetype plugin on')
vim.cmd('syntax on')
vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('FILE')))
local names = { filetype = vim.bo.filetype, groups = {} }
for _, q in ipairs(vim.fn.json_decode(os.getenv('QUERIES'))) do
  table.insert(names.groups, vim.fn.synIDattr(vim.fn.synID(q[1], q[2], 1), 'name'))
end
local f = io.open(os.getenv('OUT'), 'w')
f:write(vim.fn.json_encode(names))
f:close()
vim.cmd('qa!')
