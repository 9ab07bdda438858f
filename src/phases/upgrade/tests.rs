//! Unit tests of the whole upgrade phase list over scripted hosts (no root, no lab).
