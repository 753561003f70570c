"""The code that runs inside the sandbox: stdlib only, it never imports the rest of flowmend.

Inside, these modules are top-level (the zygote puts this folder first on `sys.path`); the parent
imports `flowmend_wire` from here so that both ends of the wire share one definition of it.
"""
