// deepcomp board sim: the verilated board core (boards.device.BoardCore) served on a pseudo-terminal.
//
// Why a C++ loop and not cocotb: the host talks to this at the board's real baud rate for
// hundreds of images, tens of millions of clock cycles; a Python callback per cycle would be
// far too slow. The loop plays the USB-UART bridge: bytes the host writes to the pty leave on
// the core's rx pin as 8N1 frames at exactly --baud (a real bridge's rate), and the core's tx
// pin is sampled mid-bit at --baud back into bytes for the host. The core itself runs at its
// built divisor of --clk-hz, so a divisor that misses the baud rate shows up here as it would
// on the board. With --flash the core's SPI pins see a flash chip (wake-up 0xAB, READ 0x03)
// holding that file at --flash-offset, so a boot-from-flash core boots as on the board.
//
// Time: while anything is in flight (host bytes queued, a frame on either line, the engine
// running) the clock ticks; once the core has been quiet for a while the loop sleeps in
// poll() until the host writes again, and simulated time stands still meanwhile. The stats
// (--stats FILE, JSON, rewritten on SIGUSR1 and at exit) count simulated cycles, so on-board
// throughput is measured in the board's time, not in the simulator's.
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include "verilated.h"
#include DC_TOP_HEADER

static volatile sig_atomic_t g_stop = 0, g_snapshot = 0;
static void on_stop(int) { g_stop = 1; }
static void on_usr1(int) { g_snapshot = 1; }

static void die(const char* what) {
    std::fprintf(stderr, "board sim: %s: %s\n", what, std::strerror(errno));
    std::exit(2);
}

struct Stats {
    uint64_t cycles = 0, bytes_in = 0, bytes_out = 0, frame_errors = 0, snapshots = 0;
    int64_t first_in = -1, last_out = -1;  // since the last snapshot: start of the first host
                                           // byte on rx, end of the last device byte on tx
};

static void write_stats(const char* path, const Stats& s, double clk_hz, double baud, int divisor) {
    if (!path) return;
    std::string tmp = std::string(path) + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) return;
    std::fprintf(f,
                 "{\"cycles\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu, \"frame_errors\": %llu, "
                 "\"first_in_cycle\": %lld, \"last_out_cycle\": %lld, \"clk_hz\": %.17g, \"baud\": %.17g, "
                 "\"divisor\": %d, \"snapshot\": %llu}\n",
                 (unsigned long long)s.cycles, (unsigned long long)s.bytes_in,
                 (unsigned long long)s.bytes_out, (unsigned long long)s.frame_errors,
                 (long long)s.first_in, (long long)s.last_out, clk_hz, baud, divisor,
                 (unsigned long long)s.snapshots);
    std::fclose(f);
    std::rename(tmp.c_str(), path);
}

// A SPI NOR flash in mode 0: deep power-down until 0xAB, then READ 0x03 + 24-bit address.
struct Flash {
    std::vector<uint8_t> mem;
    bool awake = false, prev_sck = false, selected = false;
    int nbits = 0;
    uint32_t shift = 0, addr = 0;
    uint8_t cmd = 0, out = 0xFF;
    int out_bit = 7;
    bool reading = false;
    int miso = 1;

    void step(bool cs, bool sck, bool mosi) {
        if (!cs) {  // deselected: the command ends (0xAB takes effect here)
            if (selected && cmd == 0xAB && nbits >= 8) awake = true;
            selected = false, reading = false, nbits = 0, cmd = 0, shift = 0, prev_sck = sck;
            miso = 1;
            return;
        }
        selected = true;
        if (sck && !prev_sck) {  // rising edge: sample mosi
            if (!reading) {
                shift = shift << 1 | (mosi ? 1 : 0);
                ++nbits;
                if (nbits == 8) cmd = shift & 0xFF;
                if (nbits == 32 && cmd == 0x03 && awake) {
                    addr = shift & 0xFFFFFF, reading = true, out_bit = -1;
                }
            }
        } else if (!sck && prev_sck && reading) {  // falling edge: drive the next data bit
            if (out_bit < 0) out = addr < mem.size() ? mem[addr] : 0xFF, ++addr, out_bit = 7;
            miso = (out >> out_bit) & 1;
            --out_bit;
        }
        prev_sck = sck;
    }
};

int main(int argc, char** argv) {
    double clk_hz = 0, baud = 0;
    int divisor = 0;
    const char *stats_path = nullptr, *link = nullptr, *flash_path = nullptr;
    long flash_offset = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        if (k == "--clk-hz") clk_hz = std::atof(argv[i + 1]);
        else if (k == "--baud") baud = std::atof(argv[i + 1]);
        else if (k == "--divisor") divisor = std::atoi(argv[i + 1]);
        else if (k == "--stats") stats_path = argv[i + 1];
        else if (k == "--link") link = argv[i + 1];
        else if (k == "--flash") flash_path = argv[i + 1];
        else if (k == "--flash-offset") flash_offset = std::atol(argv[i + 1]);
    }
    if (clk_hz <= 0 || baud <= 0) {
        std::fprintf(stderr, "board sim: --clk-hz and --baud are required\n");
        return 2;
    }
    Flash flash;
    if (flash_path) {
        FILE* f = std::fopen(flash_path, "rb");
        if (!f) die(flash_path);
        flash.mem.assign(flash_offset, 0xFF);
        int c;
        while ((c = std::fgetc(f)) != EOF) flash.mem.push_back((uint8_t)c);
        std::fclose(f);
    }

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) die("posix_openpt");
    const char* slave_name = ptsname(master);
    if (!slave_name) die("ptsname");
    std::string port = slave_name;
    // hold the slave open: the host may close and reopen the port without the master
    // seeing a hang-up, and the line discipline is raw before the host configures it
    int slave = open(port.c_str(), O_RDWR | O_NOCTTY);
    if (slave < 0) die(port.c_str());
    termios t{};
    tcgetattr(slave, &t);
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    if (link) {
        unlink(link);
        if (symlink(port.c_str(), link)) die(link);
    }
    std::signal(SIGINT, on_stop);
    std::signal(SIGTERM, on_stop);
    std::signal(SIGHUP, on_stop);
    std::signal(SIGUSR1, on_usr1);
    std::signal(SIGPIPE, SIG_IGN);

    VerilatedContext ctx;
    DC_TOP top{&ctx};
    auto tick = [&]() {
        top.clk = 0;
        top.eval();
        top.clk = 1;
        top.eval();
    };
    top.rx = 1;
    top.rst = 1;
    for (int i = 0; i < 4; ++i) tick();
    top.rst = 0;

    std::printf("%s\n", port.c_str());
    std::fflush(stdout);

    const double bit = clk_hz / baud;  // clock cycles per bit at the host's rate
    const uint64_t quiet = (uint64_t)(40 * bit) + 512;
    Stats st;
    std::deque<uint8_t> inq;
    std::string outq;
    bool rx_busy = false;
    double rx_start = 0, rx_free = 0;  // start of the frame on rx; when the line is next free
    uint16_t frame = 0x3FF;
    bool tx_busy = false;
    double tx_start = 0;
    int tx_bit = 0;
    uint16_t tx_shift = 0;
    int prev_tx = 1;
    uint64_t idle = 0;
    uint8_t buf[4096];

    while (!g_stop) {
        const uint64_t now = st.cycles;
        if ((now & 63) == 0 || (inq.empty() && !rx_busy)) {
            ssize_t n = read(master, buf, sizeof buf);
            if (n > 0) inq.insert(inq.end(), buf, buf + n);
        }
        if (!rx_busy && !inq.empty()) {  // next frame: start bit, 8 data bits LSB first, stop
            rx_start = rx_free > (double)now ? rx_free : (double)now;
            frame = (uint16_t)(0x200 | (inq.front() << 1));
            inq.pop_front();
            rx_busy = true;
            ++st.bytes_in;
            if (st.first_in < 0) st.first_in = (int64_t)rx_start;
        }
        int line = 1;
        if (rx_busy && (double)now >= rx_start) {
            int b = (int)(((double)now - rx_start) / bit);
            if (b >= 10) {
                rx_busy = false, rx_free = rx_start + 10 * bit;
            } else {
                line = (frame >> b) & 1;
            }
        }
        top.rx = line;
#ifdef HAS_FLASH
        flash.step(top.flash_cs, top.flash_sck, top.flash_copi);
        top.flash_cipo = flash.miso;
#endif
        tick();
        ++st.cycles;

        const int tx = top.tx;
        if (!tx_busy && prev_tx == 1 && tx == 0) tx_busy = true, tx_start = (double)st.cycles, tx_bit = 0,
                                                  tx_shift = 0;
        if (tx_busy && (double)st.cycles >= tx_start + (tx_bit + 0.5) * bit) {
            tx_shift |= (uint16_t)(tx << tx_bit);
            if (++tx_bit == 10) {
                tx_busy = false;
                if ((tx_shift & 1) == 0 && (tx_shift >> 9) == 1) {
                    outq.push_back((char)((tx_shift >> 1) & 0xFF));
                    ++st.bytes_out;
                    st.last_out = (int64_t)st.cycles;
                } else {
                    ++st.frame_errors;
                }
            }
        }
        prev_tx = tx;
        if (!outq.empty()) {
            ssize_t n = write(master, outq.data(), outq.size());
            if (n > 0) outq.erase(0, n);
        }
        if (g_snapshot) {
            g_snapshot = 0;
            ++st.snapshots;
            write_stats(stats_path, st, clk_hz, baud, divisor);
            st.first_in = -1;
        }
        bool busy = rx_busy || !inq.empty() || tx_busy || tx == 0 || top.running;
#ifdef HAS_FLASH
        busy = busy || !top.booted;
#endif
        idle = busy ? 0 : idle + 1;
        if (idle > quiet) {  // the core is quiet: sleep until the host writes (time stands still)
            pollfd p{master, (short)(POLLIN | (outq.empty() ? 0 : POLLOUT)), 0};
            poll(&p, 1, 200);
        }
    }
    write_stats(stats_path, st, clk_hz, baud, divisor);
    if (link) unlink(link);
    close(slave);
    close(master);
    return 0;
}
