//! Unit tests of the reset phase lists over scripted hosts.
