" policyctl .scale files
" `set`, not `setfiletype`: a file that starts with a comment is otherwise taken for `conf`.
autocmd BufRead,BufNewFile *.scale set filetype=scale
