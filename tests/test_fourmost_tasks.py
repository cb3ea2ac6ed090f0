"""4MOST training tasks (lymannet.fourmost.tasks): the augmentation of training windows."""


def test_window_augmentation_mirrors_with_the_offset_and_adds_noise_with_its_sigma():
    import torch

    from lymannet.fourmost.tasks import augment_windows

    x = torch.stack([torch.linspace(0, 1, 8).repeat(4, 1), torch.full((4, 8), 0.5)], dim=1)
    offset = torch.tensor([0.5, -0.2, 0.1, 0.9])
    torch.manual_seed(0)
    y, off = augment_windows(x, offset, flip=True, noise=0.0)
    mirrored = off != offset
    assert torch.equal(y[mirrored], x[mirrored].flip(-1)) and torch.equal(off[mirrored], -offset[mirrored])
    assert torch.equal(y[~mirrored], x[~mirrored])
    torch.manual_seed(1)
    z, _ = augment_windows(x, None, flip=False, noise=1.0)
    assert torch.all(z[:, 1] >= x[:, 1]) and not torch.equal(z[:, 0], x[:, 0])
    torch.manual_seed(1)
    assert torch.equal(augment_windows(x, None, flip=False, noise=1.0)[0], z)  # seeded: reproducible
