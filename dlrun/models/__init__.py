"""Model builders: keyword-only functions returning an nn.Module, named by the option's `_target_`."""
