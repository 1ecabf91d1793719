"""Fixes to moto's behaviour where it differs from AWS, applied when the local stack starts moto
(`PYTHONPATH` names this folder, so Python imports this file at start-up). Each fix is small and
says which AWS behaviour it restores; product code never works around moto.

1. CloudFormation: a stack created by a CREATE change set resolves `Fn::ImportValue` against the
   account's exports, as a stack created by CreateStack does. moto 5.2 builds that stack
   without the exports, so executing the change set fails with "No export named ... found."
"""


def _patch_change_set_imports():
    try:
        from moto.cloudformation import models
    except Exception:  # moto not importable: nothing to patch
        return
    stack_class = models.Stack
    original_init = stack_class.__init__

    def __init__(self, *args, **kwargs):
        if kwargs.get("cross_stack_resources") is None:
            account_id = kwargs.get("account_id")
            region_name = kwargs.get("region_name")
            if account_id and region_name:
                backend = models.cloudformation_backends[account_id][region_name]
                # The backend's own dict: exports created later are seen too, as in AWS.
                kwargs["cross_stack_resources"] = backend.exports
        original_init(self, *args, **kwargs)

    stack_class.__init__ = __init__


_patch_change_set_imports()
