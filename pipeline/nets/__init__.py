"""Networks: the preset MLP and CNN, building a user's ``nn.Module`` from config, saving and
loading, describing the layers."""
