"""Row keys of reconstructions (raid.primitives.keys)."""

from raid.primitives.keys import find_collisions, paired_key, reconstruction_key


def test_keys_and_collisions():
    assert reconstruction_key("sub/a.jpg") == "sub/a.png"
    assert reconstruction_key("a.b.JPEG") == "a.b.png"
    assert reconstruction_key("a.png") == "a.png"
    assert paired_key("sd14", "sub/a.jpg") == "sd14/sub/a.png"
    assert find_collisions(["a.jpg", "a.png", "b.jpg", "s/a.jpg"]) == {"a.png": ["a.jpg", "a.png"]}
    assert find_collisions(["a.jpg", "s/a.jpg"]) == {}
