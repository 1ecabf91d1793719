"""Fixes to moto's behaviour where it differs from AWS, applied when the local stack starts moto
(`PYTHONPATH` names this folder, so Python imports this file at start-up). Each fix is small and
says which AWS behaviour it restores; product code never works around moto.

1. CloudFormation: a stack created by a CREATE change set resolves `Fn::ImportValue` against the
   account's exports, as a stack created by CreateStack does. moto 5.2 builds that stack
   without the exports, so executing the change set fails with "No export named ... found."
2. CloudFormation: a stack's template and Outputs are those of the change set it last
   executed, as after CreateStack/UpdateStack. moto 5.2 applies the change set's resources but
   keeps the stack's empty (CREATE) or previous (UPDATE) template and outputs, so
   DescribeStacks shows no Outputs for a stack made by a change set.
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


def _patch_change_set_outputs():
    try:
        from moto.cloudformation import models
    except Exception:  # moto not importable: nothing to patch
        return
    change_set_class = models.ChangeSet
    original_apply = change_set_class.apply

    def apply(self):
        original_apply(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()

    change_set_class.apply = apply


_patch_change_set_imports()
_patch_change_set_outputs()
