package simulator

import (
	"fmt"
	"hash/fnv"
	"math"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
)

// instrument is one entry of the default universe: its symbol, a realistic
// start price and an annualised volatility.
type instrument struct {
	sym   feed.Symbol
	price float64
	vol   float64
}

func inst(name, class, tick string, price, vol float64, desc string) instrument {
	ts := decimal.RequireFromString(tick)
	sym := feed.Symbol{Name: name, Class: class, TickSize: ts, Desc: desc}
	sym.Open, sym.PrevClose = sessionReference(name, ts, price, vol)
	return instrument{sym: sym, price: price, vol: vol}
}

// sessionReference returns a symbol's session open (its start price, on the
// tick grid) and a previous close one overnight move away from it (up to
// ±1.5 daily standard deviations, drawn from a hash of the name). Both are a
// pure function of the instrument, so every simulator run (a restart that
// resumes included) stores the same reference, and every node and page
// computes the same change against it.
func sessionReference(name string, tick decimal.Decimal, price, vol float64) (open, prevClose decimal.Decimal) {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	u := float64(h.Sum64()%20001)/10000 - 1 // [-1, 1]
	daily := vol / math.Sqrt(252)
	tf := tick.InexactFloat64()
	onGrid := func(p float64) decimal.Decimal {
		return decimal.NewFromInt(max(1, int64(math.Round(p/tf)))).Mul(tick)
	}
	return onGrid(price), onGrid(price * math.Exp(-1.5*daily*u))
}

// defaultInstruments is ordered by popularity: the first ones are the hot
// symbols that carry most of the ticks.
var defaultInstruments = []instrument{
	inst("AAPL", feed.ClassEquity, "0.01", 189.43, 0.25, "Apple"),
	inst("SPY", feed.ClassETF, "0.01", 512.30, 0.15, "SPDR S&P 500 ETF"),
	inst("NVDA", feed.ClassEquity, "0.01", 124.58, 0.55, "NVIDIA"),
	inst("TSLA", feed.ClassEquity, "0.01", 248.50, 0.60, "Tesla"),
	inst("BTC-USD", feed.ClassCrypto, "0.01", 67321.55, 0.60, "Bitcoin"),
	inst("EURUSD", feed.ClassFX, "0.00001", 1.08453, 0.07, "Euro / US Dollar"),
	inst("QQQ", feed.ClassETF, "0.01", 441.12, 0.20, "Invesco QQQ"),
	inst("MSFT", feed.ClassEquity, "0.01", 415.26, 0.25, "Microsoft"),
	inst("AMZN", feed.ClassEquity, "0.01", 182.15, 0.30, "Amazon"),
	inst("ETH-USD", feed.ClassCrypto, "0.01", 3456.78, 0.70, "Ether"),
	inst("USDJPY", feed.ClassFX, "0.001", 151.234, 0.09, "US Dollar / Yen"),
	inst("ES", feed.ClassFuture, "0.25", 5150.25, 0.15, "E-mini S&P 500"),
	inst("META", feed.ClassEquity, "0.01", 493.50, 0.35, "Meta Platforms"),
	inst("GOOGL", feed.ClassEquity, "0.01", 171.95, 0.28, "Alphabet A"),
	inst("AMD", feed.ClassEquity, "0.01", 158.40, 0.50, "Advanced Micro Devices"),
	inst("GBPUSD", feed.ClassFX, "0.00001", 1.26781, 0.08, "Pound / US Dollar"),
	inst("NQ", feed.ClassFuture, "0.25", 18120.50, 0.20, "E-mini Nasdaq-100"),
	inst("SOL-USD", feed.ClassCrypto, "0.001", 145.321, 0.90, "Solana"),
	inst("NFLX", feed.ClassEquity, "0.01", 628.90, 0.35, "Netflix"),
	inst("JPM", feed.ClassEquity, "0.01", 198.22, 0.22, "JPMorgan Chase"),
	inst("IWM", feed.ClassETF, "0.01", 204.87, 0.20, "iShares Russell 2000"),
	inst("CL", feed.ClassFuture, "0.01", 78.45, 0.35, "WTI Crude Oil"),
	inst("GC", feed.ClassFuture, "0.1", 2345.6, 0.15, "Gold"),
	inst("AUDUSD", feed.ClassFX, "0.00001", 0.65872, 0.10, "Aussie / US Dollar"),
	inst("USDCHF", feed.ClassFX, "0.00001", 0.90123, 0.08, "US Dollar / Franc"),
	inst("USDCAD", feed.ClassFX, "0.00001", 1.36540, 0.07, "US Dollar / Loonie"),
	inst("NZDUSD", feed.ClassFX, "0.00001", 0.60115, 0.10, "Kiwi / US Dollar"),
	inst("EURJPY", feed.ClassFX, "0.001", 164.012, 0.09, "Euro / Yen"),
	inst("EURGBP", feed.ClassFX, "0.00001", 0.85542, 0.06, "Euro / Pound"),
	inst("XRP-USD", feed.ClassCrypto, "0.0001", 0.5234, 0.90, "XRP"),
	inst("DOGE-USD", feed.ClassCrypto, "0.00001", 0.15321, 1.10, "Dogecoin"),
	inst("ADA-USD", feed.ClassCrypto, "0.0001", 0.4521, 0.90, "Cardano"),
	inst("LTC-USD", feed.ClassCrypto, "0.01", 83.45, 0.80, "Litecoin"),
	inst("AVAX-USD", feed.ClassCrypto, "0.001", 35.672, 1.00, "Avalanche"),
	inst("LINK-USD", feed.ClassCrypto, "0.001", 14.385, 0.95, "Chainlink"),
	inst("ZN", feed.ClassFuture, "0.015625", 109.5, 0.06, "10-Year T-Note"),
	inst("DIA", feed.ClassETF, "0.01", 389.55, 0.14, "SPDR Dow Jones ETF"),
	inst("XLF", feed.ClassETF, "0.01", 41.23, 0.18, "Financial Select SPDR"),
	inst("XLE", feed.ClassETF, "0.01", 94.67, 0.25, "Energy Select SPDR"),
	inst("XLK", feed.ClassETF, "0.01", 210.44, 0.22, "Technology Select SPDR"),
	inst("GLD", feed.ClassETF, "0.01", 215.38, 0.14, "SPDR Gold Shares"),
	inst("TLT", feed.ClassETF, "0.01", 92.15, 0.16, "iShares 20+ Year Treasury"),
	inst("EEM", feed.ClassETF, "0.01", 42.08, 0.18, "iShares MSCI Emerging Markets"),
	inst("VTI", feed.ClassETF, "0.01", 255.61, 0.15, "Vanguard Total Stock Market"),
	inst("AVGO", feed.ClassEquity, "0.01", 1345.20, 0.40, "Broadcom"),
	inst("BRK.B", feed.ClassEquity, "0.01", 408.77, 0.16, "Berkshire Hathaway B"),
	inst("LLY", feed.ClassEquity, "0.01", 771.30, 0.30, "Eli Lilly"),
	inst("V", feed.ClassEquity, "0.01", 274.12, 0.18, "Visa"),
	inst("UNH", feed.ClassEquity, "0.01", 492.65, 0.22, "UnitedHealth"),
	inst("XOM", feed.ClassEquity, "0.01", 118.33, 0.24, "Exxon Mobil"),
	inst("MA", feed.ClassEquity, "0.01", 458.90, 0.20, "Mastercard"),
	inst("JNJ", feed.ClassEquity, "0.01", 152.41, 0.15, "Johnson & Johnson"),
	inst("PG", feed.ClassEquity, "0.01", 162.08, 0.14, "Procter & Gamble"),
	inst("HD", feed.ClassEquity, "0.01", 346.72, 0.22, "Home Depot"),
	inst("COST", feed.ClassEquity, "0.01", 728.55, 0.20, "Costco"),
	inst("MRK", feed.ClassEquity, "0.01", 127.84, 0.20, "Merck"),
	inst("ABBV", feed.ClassEquity, "0.01", 168.29, 0.22, "AbbVie"),
	inst("CVX", feed.ClassEquity, "0.01", 157.36, 0.24, "Chevron"),
	inst("CRM", feed.ClassEquity, "0.01", 289.44, 0.32, "Salesforce"),
	inst("BAC", feed.ClassEquity, "0.01", 37.92, 0.26, "Bank of America"),
	inst("KO", feed.ClassEquity, "0.01", 60.55, 0.13, "Coca-Cola"),
	inst("PEP", feed.ClassEquity, "0.01", 172.18, 0.15, "PepsiCo"),
	inst("ADBE", feed.ClassEquity, "0.01", 512.67, 0.33, "Adobe"),
	inst("WMT", feed.ClassEquity, "0.01", 60.21, 0.17, "Walmart"),
	inst("TMO", feed.ClassEquity, "0.01", 578.14, 0.22, "Thermo Fisher"),
	inst("CSCO", feed.ClassEquity, "0.01", 48.93, 0.20, "Cisco"),
	inst("ACN", feed.ClassEquity, "0.01", 342.50, 0.24, "Accenture"),
	inst("MCD", feed.ClassEquity, "0.01", 271.88, 0.16, "McDonald's"),
	inst("ABT", feed.ClassEquity, "0.01", 108.45, 0.19, "Abbott Laboratories"),
	inst("INTC", feed.ClassEquity, "0.01", 31.22, 0.40, "Intel"),
	inst("ORCL", feed.ClassEquity, "0.01", 125.67, 0.30, "Oracle"),
	inst("DIS", feed.ClassEquity, "0.01", 112.43, 0.26, "Walt Disney"),
	inst("WFC", feed.ClassEquity, "0.01", 58.77, 0.26, "Wells Fargo"),
	inst("QCOM", feed.ClassEquity, "0.01", 168.92, 0.34, "Qualcomm"),
	inst("TXN", feed.ClassEquity, "0.01", 172.35, 0.26, "Texas Instruments"),
	inst("IBM", feed.ClassEquity, "0.01", 183.64, 0.20, "IBM"),
	inst("CAT", feed.ClassEquity, "0.01", 356.21, 0.26, "Caterpillar"),
	inst("GE", feed.ClassEquity, "0.01", 161.48, 0.28, "GE Aerospace"),
	inst("AMGN", feed.ClassEquity, "0.01", 298.73, 0.22, "Amgen"),
	inst("PFE", feed.ClassEquity, "0.01", 28.14, 0.22, "Pfizer"),
	inst("NKE", feed.ClassEquity, "0.01", 93.56, 0.28, "Nike"),
	inst("UBER", feed.ClassEquity, "0.01", 71.29, 0.40, "Uber"),
	inst("PYPL", feed.ClassEquity, "0.01", 64.87, 0.38, "PayPal"),
	inst("SBUX", feed.ClassEquity, "0.01", 87.45, 0.25, "Starbucks"),
	inst("BA", feed.ClassEquity, "0.01", 185.30, 0.35, "Boeing"),
	inst("GS", feed.ClassEquity, "0.01", 452.18, 0.26, "Goldman Sachs"),
	inst("MS", feed.ClassEquity, "0.01", 94.62, 0.27, "Morgan Stanley"),
	inst("C", feed.ClassEquity, "0.01", 62.35, 0.28, "Citigroup"),
	inst("T", feed.ClassEquity, "0.01", 17.12, 0.20, "AT&T"),
	inst("VZ", feed.ClassEquity, "0.01", 40.28, 0.18, "Verizon"),
	inst("F", feed.ClassEquity, "0.01", 12.45, 0.35, "Ford"),
	inst("GM", feed.ClassEquity, "0.01", 45.67, 0.33, "General Motors"),
	inst("PLTR", feed.ClassEquity, "0.01", 23.84, 0.65, "Palantir"),
	inst("SHOP", feed.ClassEquity, "0.01", 72.19, 0.55, "Shopify"),
	inst("COIN", feed.ClassEquity, "0.01", 224.56, 0.80, "Coinbase"),
	inst("SNOW", feed.ClassEquity, "0.01", 156.33, 0.50, "Snowflake"),
	inst("ABNB", feed.ClassEquity, "0.01", 158.21, 0.40, "Airbnb"),
	inst("SQ", feed.ClassEquity, "0.01", 71.95, 0.50, "Block"),
	inst("MU", feed.ClassEquity, "0.01", 118.44, 0.45, "Micron"),
	inst("ARM", feed.ClassEquity, "0.01", 125.80, 0.70, "Arm Holdings"),
	inst("SMCI", feed.ClassEquity, "0.01", 812.35, 0.90, "Super Micro Computer"),
	inst("RIVN", feed.ClassEquity, "0.01", 10.87, 0.70, "Rivian"),
	inst("SI", feed.ClassFuture, "0.005", 27.455, 0.25, "Silver"),
	inst("NG", feed.ClassFuture, "0.001", 1.952, 0.60, "Natural Gas"),
	inst("USDMXN", feed.ClassFX, "0.0001", 16.7342, 0.12, "US Dollar / Peso"),
	inst("USDCNH", feed.ClassFX, "0.0001", 7.2418, 0.04, "US Dollar / Offshore Yuan"),
	inst("DOT-USD", feed.ClassCrypto, "0.001", 7.128, 0.95, "Polkadot"),
	inst("MATIC-USD", feed.ClassCrypto, "0.0001", 0.7135, 1.00, "Polygon"),
}

// DefaultUniverseSize is the number of instruments in the default universe.
var DefaultUniverseSize = len(defaultInstruments)

// instruments returns the first n instruments of the default universe,
// padded with synthetic equities SYN0001, SYN0002, … when n is larger.
// n <= 0 means the default universe.
func instruments(n int) []instrument {
	if n <= 0 {
		n = len(defaultInstruments)
	}
	out := make([]instrument, 0, n)
	out = append(out, defaultInstruments[:min(n, len(defaultInstruments))]...)
	for i := 1; len(out) < n; i++ {
		p := 10 + float64((i*7919)%490) + float64(i%100)/100
		out = append(out, inst(fmt.Sprintf("SYN%04d", i), feed.ClassEquity, "0.01", p, 0.30, "Synthetic equity"))
	}
	return out
}

// Universe returns a universe of n symbols: the default universe's first n,
// padded with synthetic equities when n is larger than it. n <= 0 means the
// default universe.
func Universe(n int) *feed.Universe {
	ins := instruments(n)
	syms := make([]feed.Symbol, len(ins))
	for i, in := range ins {
		syms[i] = in.sym
	}
	u, err := feed.NewUniverse(syms)
	if err != nil {
		panic(fmt.Sprintf("simulator: default universe is invalid: %v", err))
	}
	return u
}
