"""The non-local block's successors, built in as ``model.block`` values (``nlbench blocks`` lists them).

Each module registers its blocks with ``nlbench.ops.registry.register_block``; the registry imports every
module of this package on its first look-up, so adding one is a new module here (plus its docs section and
tests), nothing else.
"""
