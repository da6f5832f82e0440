"""zotune inside other libraries' workflows: ``peft`` adapters (LoRA, prefix) and the Hugging Face ``Trainer``
(``ZOTrainer``). Nothing is imported here, so using one does not load the other's library."""
