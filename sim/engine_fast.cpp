// deepcomp: the verilated engine (hdl.top.Accelerator) driven from C++ through its streams.
//
// Why: the cocotb bench (sim/bench_engine.py) pays Python callbacks per input beat and per
// clock edge, about 30 k cycles/s here; LeNet-5 takes 65 k cycles an image, so 10,000 images
// would take hours. This loop does what the bench does -- input vectors on i_act (valid /
// ready), result beats off o_res (always ready), the sticky starve flag -- at Verilator's
// own speed. Same protocol, same results; sim/engine_fast.py builds and runs it.
//
//   engine_fast INPUTS RESULTS COUNT SIZE TIMEOUT
//
// (Verilator spells the ports i_act__valid ... as i_act___05Fvalid ...: "__" is escaped.)
// INPUTS: COUNT * SIZE bytes (one input vector after the other). RESULTS (written): per
// input a u32 beat count n, n u32 beats (status, cycles, logits...), a u8 starve flag.
// Exit status 3 if an input is not answered within TIMEOUT cycles.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "verilated.h"
#include DC_TOP_HEADER

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: engine_fast INPUTS RESULTS COUNT SIZE TIMEOUT\n");
        return 2;
    }
    const long count = std::atol(argv[3]), size = std::atol(argv[4]);
    const long long timeout = std::atoll(argv[5]);
    std::vector<uint8_t> in(count * size);
    FILE* f = std::fopen(argv[1], "rb");
    if (!f || std::fread(in.data(), 1, in.size(), f) != in.size()) {
        std::fprintf(stderr, "engine_fast: cannot read %s\n", argv[1]);
        return 2;
    }
    std::fclose(f);
    FILE* out = std::fopen(argv[2], "wb");
    if (!out) {
        std::fprintf(stderr, "engine_fast: cannot write %s\n", argv[2]);
        return 2;
    }
    VerilatedContext ctx;
    DC_TOP top(&ctx);
    uint8_t starve = 0;
    auto tick = [&]() {
        top.clk = 1;
        top.eval();
        top.clk = 0;
        top.eval();
        starve |= top.starve;
    };
    top.clk = 0;
    top.rst = 1;
    top.i_act___05Fvalid = 0;
    top.o_res___05Fready = 1;
    top.eval();
    for (int i = 0; i < 3; i++) tick();
    top.rst = 0;
    top.eval();
    std::vector<uint32_t> beats;
    for (long k = 0; k < count; k++) {
        const uint8_t* x = &in[k * size];
        long long waited = 0;
        for (long j = 0; j < size;) {
            top.i_act___05Fvalid = 1;
            top.i_act___05Fpayload = x[j];
            top.eval();
            const bool ready = top.i_act___05Fready;
            tick();
            if (ready) j++;
            if (++waited > timeout) return 3;
        }
        top.i_act___05Fvalid = 0;
        top.eval();
        beats.clear();
        for (;;) {
            if (top.o_res___05Fvalid) {
                const uint64_t w = top.o_res___05Fpayload;
                beats.push_back(static_cast<uint32_t>(w & 0xFFFFFFFFu));
                const bool last = (w >> 32) & 1;
                tick();
                if (last) break;
            } else {
                tick();
            }
            if (++waited > timeout) return 3;
        }
        const uint32_t nb = beats.size();
        std::fwrite(&nb, 4, 1, out);
        std::fwrite(beats.data(), 4, nb, out);
        std::fwrite(&starve, 1, 1, out);
    }
    std::fclose(out);
    top.final();
    return 0;
}
