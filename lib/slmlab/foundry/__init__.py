"""Microsoft Foundry Local: its SDK in this process (local), and a model catalog served from this machine."""
