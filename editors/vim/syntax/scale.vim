" Vim syntax for policyctl .scale files: the classes of the TextMate grammar
" (editors/vscode/syntaxes/scale.tmLanguage.json), for Vim and Neovim without
" tree-sitter. tests/lsp.rs checks it in Neovim on a sample.
if exists('b:current_syntax')
  finish
endif

syn case match

syn keyword scaleDeclaration policy schedule
syn keyword scaleKeyword target replicas every metric let from track at per replica
syn keyword scaleKeyword desired when for scale up down by to buffer tolerance on missing hold
syn keyword scaleKeyword after stabilize limit select disabled cooldown except cron exactly
syn keyword scaleKeyword least most
syn match   scaleKeyword "\<dry-run\>"
syn keyword scaleLogical and or not
syn keyword scaleCurrent current
syn keyword scaleDay mon tue wed thu fri sat sun daily
syn match   scaleFunction "\<\(ceil\|floor\|round\|abs\|min\|max\|clamp\)\ze\s*("
syn match   scaleKeyword "\<\(min\|max\)\>\ze\s*\($\|[^( ]\)"

syn match   scaleBadUnit "\<\d[0-9_]*\(\.\d[0-9_]*\)\=[A-Za-z]\+\>"
syn match   scaleNumber "\<\d[0-9_]*\(\.\d[0-9_]*\)\=\>"
syn match   scaleQuantity "\<\d[0-9_]*\(\.\d[0-9_]*\)\=\(%\|KiB\|MiB\|GiB\|TiB\|KB\|MB\|GB\|TB\|B\|k\|M\)\([A-Za-z0-9_]\)\@!" contains=scaleUnit
syn match   scaleDuration "\<\d[0-9_]*\(\.\d[0-9_]*\)\=\(ms\|s\|m\|h\|d\)\>" contains=scaleUnit
syn match   scaleUnit "\(\d\)\@<=\(%\|KiB\|MiB\|GiB\|TiB\|KB\|MB\|GB\|TB\|ms\|B\|k\|M\|s\|m\|h\|d\)" contained
syn match   scaleTime "\<\d\{1,2}:\d\d\>"
syn match   scaleDate "\<\d\{4}-\d\d-\d\d\(T\d\d:\d\d\(:\d\d\)\=\)\=\>"
syn match   scaleOperator "\.\.\|??\|>=\|<=\|==\|!=\|[<>+*/=-]"

syn match   scaleEscape "\\[\"\\nt]" contained
syn region  scaleString start=+"+ skip=+\\.+ end=+"\|$+ contains=scaleEscape
" `in` and `timezone` are not keywords above: a keyword would win over this region.
syn region  scaleZone matchgroup=scaleKeyword start=+\<\(in\|timezone\)\s\+"+ end=+"\|$+
syn region  scaleRawString start=+\<r\z(#*\)"+ end=+"\z1+
syn match   scaleComment "#.*$" contains=@Spell

hi def link scaleDeclaration Structure
hi def link scaleKeyword Keyword
hi def link scaleLogical Operator
hi def link scaleCurrent Identifier
hi def link scaleDay Constant
hi def link scaleFunction Function
hi def link scaleBadUnit Error
hi def link scaleNumber Number
hi def link scaleQuantity Number
hi def link scaleDuration Number
hi def link scaleUnit Type
hi def link scaleTime Number
hi def link scaleDate Number
hi def link scaleOperator Operator
hi def link scaleEscape SpecialChar
hi def link scaleString String
hi def link scaleZone Special
hi def link scaleRawString String
hi def link scaleComment Comment

let b:current_syntax = 'scale'
