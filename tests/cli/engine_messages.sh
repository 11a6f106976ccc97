#!/usr/bin/env bash
# The message rule of the binding boundary (DEVELOPERS.md): engine/ never speaks Lua. Its error
# messages (the format strings of fvl_err, adjacent literals joined) are 0-based, Lua-free
# invariants; the 1-based wording a Lua user reads is made once, in the binding (lua/bind_*.c).
# This test fails when an engine message contains a Lua idiom:
#   - Lua method syntax (":float()", "sync:wait()") or a "use :x" hint, Lua's "nil",
#   - a 1-based range of positions, "1..%" ("dim %d is outside 1..%d", "index[%lld] ... 1..%lld"),
#   - a Lua module path as the function name ("fvl.dist.allgather: ...": the engine says "dist.allgather").
# The allow-list below holds the few "1..%" that are VALUE ranges or a file format's own numbering,
# not 1-based positions; each entry says why.
# usage (from the repo root): bash tests/cli/engine_messages.sh [/path/to/fvl [builddir]]
set -u
cd "$(dirname "$0")/../.."
exec perl -e '
use strict; use warnings;
# "file|fragment of the joined format string": allowed "1..%" (each a value range, not a position)
my %allow = (
  # an IDX header field: the number of dimensions is a value in 1..FVL_MAXDIM
  "engine/data/idx.c|<ndim 1..%d>" => 1,
  # insightface .rec image sets number their image records 1..n (record 0 is the header): the
  # file format'"'"'s own numbering, which the message quotes
  "engine/data/loader.c|images are records 1..%lld" => 1,
  "engine/data/loader.c|records 1..%lld) is" => 1,
);
my @files = (glob("engine/*.c"), glob("engine/*/*.c"));
die "engine_messages: no engine sources found (run from the repository root)\n" unless @files;
my ($calls, $bad) = (0, 0);
for my $f (@files) {
  open(my $h, "<", $f) or die "$f: $!";
  local $/; my $src = <$h>; close $h;
  while ($src =~ /\bfvl_err\s*\(\s*((?:"(?:[^"\\]|\\.)*"\s*|[A-Z_][A-Z0-9_]*\s*)+)/g) {
    my ($args, $pos) = ($1, $-[0]);
    my $line = 1 + (substr($src, 0, $pos) =~ tr/\n//);
    my $fmt = join "", ($args =~ /"((?:[^"\\]|\\.)*)"/g);
    $calls++;
    my @why;
    push @why, "Lua method syntax" if $fmt =~ /(?:[A-Za-z_)\]]|^|[\s(]):[A-Za-z_]+\(/;
    push @why, "a \"use :x\" hint" if $fmt =~ /use :/;
    push @why, "Lua'"'"'s nil (the engine says NULL)" if $fmt =~ /\bnil\b/;
    push @why, "the Lua module path fvl." if $fmt =~ /^fvl\./ || $fmt =~ /[\s(]fvl\.[a-z]/;
    if ($fmt =~ /(?<![-0-9.])1\.\.%/) {
      my $ok = 0;
      for my $k (keys %allow) { my ($af, $frag) = split /\|/, $k, 2; $ok = 1 if $af eq $f && index($fmt, $frag) >= 0; }
      push @why, "a 1-based range \"1..%\" (the engine is 0-based: \"outside 0..%d (0-based)\")" unless $ok;
    }
    next unless @why;
    $bad++;
    print "$f:$line: \"$fmt\": ", join("; ", @why), "\n";
  }
}
die "engine_messages: found only $calls fvl_err calls: the extraction is broken\n" if $calls < 500;
if ($bad) { print "FAIL: $bad engine message(s) speak Lua; make the binding check first with the 1-based wording (lua/bind_util.c: fvl_checkdim, fvl_checkpos, fvl_checkfloat, fvl_checkindex) and word the engine invariant 0-based\n"; exit 1; }
print "ok: $calls engine messages, none speaks Lua\n";
'
