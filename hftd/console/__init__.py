"""`hftctl console`: the operator's terminal dashboard (urwid on trio)."""
